package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/postern-mail/postern/internal/store"
)

// Changes returns the broadcaster the writer publishes committed changes to.
func (s *Store) Changes() *store.Broadcaster { return s.changes }

// CreateMailbox creates a mailbox with a fresh UIDVALIDITY. Superior levels
// are not created: they appear in listings as implicit parents.
func (s *Store) CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (store.Mailbox, error) {
	name, err := store.CleanMailboxName(name)
	if err != nil {
		return store.Mailbox{}, err
	}
	use, ok := store.ValidSpecialUse(specialUse)
	if !ok {
		return store.Mailbox{}, fmt.Errorf("special use %q: %w", specialUse, store.ErrBadName)
	}
	var mb store.Mailbox
	err = s.exec(func(w *wtx) error {
		if err := createMailbox(w, userID, name, use); err != nil {
			return err
		}
		var err error
		mb, err = scanMailbox(w.QueryRow(`SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name))
		return err
	})
	return mb, err
}

// DeleteMailbox removes a mailbox and its entries, freeing messages no
// longer referenced. Children and the subscription stay (RFC 9051 6.3.4,
// 6.3.7).
func (s *Store) DeleteMailbox(ctx context.Context, userID int64, name string) error {
	name, err := store.CleanMailboxName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return fmt.Errorf("INBOX cannot be deleted: %w", store.ErrInUse)
	}
	var orphans []string
	var id int64
	return s.write(&writeReq{fn: func(w *wtx) error {
		if err := w.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name).Scan(&id); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox %s: %w", name, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE messages SET refs = refs - (SELECT count(*) FROM entries e WHERE e.mailbox_id = ?1 AND e.message_id = messages.id)
				WHERE id IN (SELECT message_id FROM entries WHERE mailbox_id = ?1)`,
			`DELETE FROM keywords WHERE mailbox_id = ?1`,
			`DELETE FROM mailboxes WHERE id = ?1`,
		} {
			if _, err := w.Exec(q, id); err != nil {
				return err
			}
		}
		var err error
		orphans, err = collectOrphans(w)
		return err
	}, after: func() {
		s.removeBlobs(orphans)
		s.changes.Publish(store.Change{Kind: store.ChangeRemoved, MailboxID: id})
	}})
}

// RenameMailbox renames a mailbox with its children and subscriptions.
// Renaming INBOX creates the new mailbox, moves every INBOX message into it
// (keeping their UIDs under the new mailbox's own UIDVALIDITY) and leaves
// INBOX empty; INBOX's children stay where they are (RFC 9051 6.3.6).
func (s *Store) RenameMailbox(ctx context.Context, userID int64, oldName, newName string) error {
	oldName, err := store.CleanMailboxName(oldName)
	if err != nil {
		return err
	}
	newName, err = store.CleanMailboxName(newName)
	if err != nil {
		return err
	}
	if newName == "INBOX" || oldName == newName {
		return fmt.Errorf("mailbox %s: %w", newName, store.ErrExists)
	}
	if strings.HasPrefix(newName, oldName+string(store.HierarchyDelim)) {
		return fmt.Errorf("cannot move %s into itself: %w", oldName, store.ErrBadName)
	}
	if oldName == "INBOX" {
		return s.renameInbox(userID, newName)
	}
	return s.exec(func(w *wtx) error {
		prefix := oldName + string(store.HierarchyDelim)
		var n int
		if err := w.QueryRow(`SELECT count(*) FROM mailboxes WHERE user_id = ? AND (name = ? OR substr(name, 1, ?) = ?)`,
			userID, oldName, runeLen(prefix), prefix).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("mailbox %s: %w", oldName, store.ErrNotFound)
		}
		newPrefix := newName + string(store.HierarchyDelim)
		if err := w.QueryRow(`SELECT count(*) FROM mailboxes WHERE user_id = ? AND (name = ? OR substr(name, 1, ?) = ?)`,
			userID, newName, runeLen(newPrefix), newPrefix).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("mailbox %s: %w", newName, store.ErrExists)
		}
		skip := runeLen(oldName) + 1
		for _, table := range []string{"mailboxes", "subscriptions"} {
			if _, err := w.Exec(`UPDATE `+table+` SET name = ? || substr(name, ?) WHERE user_id = ? AND (name = ? OR substr(name, 1, ?) = ?)`,
				newName, skip, userID, oldName, runeLen(prefix), prefix); err != nil {
				if isUnique(err) {
					return fmt.Errorf("mailbox %s: %w", newName, store.ErrExists)
				}
				return err
			}
		}
		return nil
	})
}

func (s *Store) renameInbox(userID int64, newName string) error {
	var changes []store.Change
	return s.write(&writeReq{fn: func(w *wtx) error {
		changes = changes[:0]
		var inbox store.Mailbox
		var err error
		inbox, err = scanMailbox(w.QueryRow(`SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = ? AND name = 'INBOX'`, userID))
		if err != nil {
			return fmt.Errorf("INBOX: %w", err)
		}
		if err := createMailbox(w, userID, newName, ""); err != nil {
			return err
		}
		var newID int64
		if err := w.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, newName).Scan(&newID); err != nil {
			return err
		}
		modseq := inbox.HighestModSeq + 1
		rows, err := w.Query(`SELECT uid FROM entries WHERE mailbox_id = ? ORDER BY uid`, inbox.ID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var uid uint32
			if err := rows.Scan(&uid); err != nil {
				rows.Close()
				return err
			}
			changes = append(changes, store.Change{Kind: store.ChangeExpunge, MailboxID: inbox.ID, UID: uid, ModSeq: modseq})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) SELECT mailbox_id, uid, ? FROM entries WHERE mailbox_id = ?`, []any{modseq, inbox.ID}},
			{`UPDATE entries SET mailbox_id = ? WHERE mailbox_id = ?`, []any{newID, inbox.ID}},
			{`UPDATE keywords SET mailbox_id = ? WHERE mailbox_id = ?`, []any{newID, inbox.ID}},
			{`INSERT OR IGNORE INTO mailbox_keywords(mailbox_id, keyword) SELECT ?, keyword FROM mailbox_keywords WHERE mailbox_id = ?`, []any{newID, inbox.ID}},
			{`UPDATE mailboxes SET uidnext = ?, highest_modseq = ?, messages = ?, unseen = ?, size = ? WHERE id = ?`,
				[]any{inbox.UIDNext, inbox.HighestModSeq, inbox.Messages, inbox.Unseen, inbox.Size, newID}},
			{`UPDATE mailboxes SET messages = 0, unseen = 0, size = 0, highest_modseq = ? WHERE id = ?`, []any{modseq, inbox.ID}},
		} {
			if _, err := w.Exec(q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	}, after: func() { s.changes.Publish(changes...) }})
}

// SetSubscribed adds or removes a name from the subscriptions.
func (s *Store) SetSubscribed(ctx context.Context, userID int64, name string, subscribed bool) error {
	name, err := store.CleanMailboxName(name)
	if err != nil {
		return err
	}
	return s.exec(func(w *wtx) error {
		q := `DELETE FROM subscriptions WHERE user_id = ? AND name = ?`
		if subscribed {
			q = `INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)`
		}
		_, err := w.Exec(q, userID, name)
		return err
	})
}

// Subscriptions lists the subscribed names, existing or not.
func (s *Store) Subscriptions(ctx context.Context, userID int64) ([]string, error) {
	return s.strings(ctx, `SELECT name FROM subscriptions WHERE user_id = ? ORDER BY name`, userID)
}

// MailboxKeywords lists the keywords ever set in a mailbox.
func (s *Store) MailboxKeywords(ctx context.Context, mailboxID int64) ([]string, error) {
	return s.strings(ctx, `SELECT keyword FROM mailbox_keywords WHERE mailbox_id = ? ORDER BY keyword`, mailboxID)
}

func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.rquery(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// runeLen is a length as SQLite's substr counts it on text: in characters.
func runeLen(s string) int { return len([]rune(s)) }
