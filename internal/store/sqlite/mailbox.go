package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/postern-mail/postern/internal/store"
)

const mailboxCols = `id, user_id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq, messages, unseen, size`

func scanMailbox(sc interface{ Scan(...any) error }) (store.Mailbox, error) {
	var m store.Mailbox
	err := sc.Scan(&m.ID, &m.UserID, &m.Name, &m.SpecialUse, &m.Subscribed, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq, &m.Messages, &m.Unseen, &m.Size)
	return m, err
}

// Mailboxes lists a user's mailboxes, INBOX first.
func (s *Store) Mailboxes(ctx context.Context, userID int64) ([]store.Mailbox, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = ? ORDER BY name != 'INBOX', name`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// MailboxByName finds a mailbox; "INBOX" matches case-insensitively.
func (s *Store) MailboxByName(ctx context.Context, userID int64, name string) (store.Mailbox, error) {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	m, err := scanMailbox(s.rdb.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %s: %w", name, store.ErrNotFound)
	}
	return m, err
}

// Entries lists a mailbox's messages by UID.
func (s *Store) Entries(ctx context.Context, mailboxID int64) ([]store.Entry, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT e.uid, e.message_id, m.qid, m.mail_from, e.flags, e.modseq, e.internal_date, e.size
		FROM entries e JOIN messages m ON m.id = e.message_id WHERE e.mailbox_id = ? ORDER BY e.uid`, mailboxID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Entry
	for rows.Next() {
		e := store.Entry{MailboxID: mailboxID}
		var date int64
		if err := rows.Scan(&e.UID, &e.MessageID, &e.QueueID, &e.From, &e.Flags, &e.ModSeq, &date, &e.Size); err != nil {
			return nil, err
		}
		e.InternalDate = fromMilli(date)
		out = append(out, e)
	}
	return out, rows.Err()
}

type entryReader struct {
	io.Reader
	c io.Closer
}

func (r *entryReader) Close() error { return r.c.Close() }

// OpenEntry returns the message as its mailbox holds it: the recipient's
// prefix, then the stored message.
func (s *Store) OpenEntry(ctx context.Context, mailboxID int64, uid uint32) (io.ReadCloser, error) {
	var prefix, data []byte
	var qid string
	var inline bool
	err := s.rdb.QueryRowContext(ctx, `SELECT e.prefix, m.qid, m.inline, c.data FROM entries e JOIN messages m ON m.id = e.message_id
		LEFT JOIN contents c ON c.message_id = m.id WHERE e.mailbox_id = ? AND e.uid = ?`, mailboxID, uid).Scan(&prefix, &qid, &inline, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", uid, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if inline {
		return io.NopCloser(io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(data))), nil
	}
	f, err := s.blobs.Open(qid)
	if err != nil {
		return nil, err
	}
	return &entryReader{Reader: io.MultiReader(bytes.NewReader(prefix), f), c: f}, nil
}

// SetFlags replaces the system flags of the given UIDs; each changed entry
// and the mailbox get a new MODSEQ (RFC 7162 3.1).
func (s *Store) SetFlags(ctx context.Context, mailboxID int64, uids []uint32, flags store.Flags) (uint64, error) {
	var modseq uint64
	err := s.exec(func(w *wtx) error {
		if err := w.QueryRow(`SELECT highest_modseq + 1 FROM mailboxes WHERE id = ?`, mailboxID).Scan(&modseq); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNotFound)
			}
			return err
		}
		changed := 0
		for _, uid := range uids {
			var old store.Flags
			if err := w.QueryRow(`SELECT flags FROM entries WHERE mailbox_id = ? AND uid = ?`, mailboxID, uid).Scan(&old); errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			if old == flags {
				continue
			}
			if _, err := w.Exec(`UPDATE entries SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`, flags, modseq, mailboxID, uid); err != nil {
				return err
			}
			delta := 0
			if old&store.FlagSeen == 0 && flags&store.FlagSeen != 0 {
				delta = -1
			} else if old&store.FlagSeen != 0 && flags&store.FlagSeen == 0 {
				delta = 1
			}
			if delta != 0 {
				if _, err := w.Exec(`UPDATE mailboxes SET unseen = unseen + ? WHERE id = ?`, delta, mailboxID); err != nil {
					return err
				}
			}
			changed++
		}
		if changed == 0 {
			modseq--
			return nil
		}
		_, err := w.Exec(`UPDATE mailboxes SET highest_modseq = ? WHERE id = ?`, modseq, mailboxID)
		return err
	})
	return modseq, err
}

// Expunge removes the given UIDs, remembers them with the new MODSEQ (for
// QRESYNC's VANISHED) and frees message files no longer referenced.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) (uint64, error) {
	var modseq uint64
	var orphans []string
	err := s.write(&writeReq{fn: func(w *wtx) error {
		orphans = orphans[:0]
		if err := w.QueryRow(`SELECT highest_modseq + 1 FROM mailboxes WHERE id = ?`, mailboxID).Scan(&modseq); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNotFound)
			}
			return err
		}
		removed := 0
		for _, uid := range uids {
			var msgID, size int64
			var flags store.Flags
			if err := w.QueryRow(`SELECT message_id, flags, size FROM entries WHERE mailbox_id = ? AND uid = ?`, mailboxID, uid).Scan(&msgID, &flags, &size); errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			unseen := 0
			if flags&store.FlagSeen == 0 {
				unseen = 1
			}
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`DELETE FROM entries WHERE mailbox_id = ? AND uid = ?`, []any{mailboxID, uid}},
				{`DELETE FROM keywords WHERE mailbox_id = ? AND uid = ?`, []any{mailboxID, uid}},
				{`INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)`, []any{mailboxID, uid, modseq}},
				{`UPDATE mailboxes SET messages = messages - 1, unseen = unseen - ?, size = size - ? WHERE id = ?`, []any{unseen, size, mailboxID}},
				{`UPDATE messages SET refs = refs - 1 WHERE id = ?`, []any{msgID}},
			} {
				if _, err := w.Exec(q.sql, q.args...); err != nil {
					return err
				}
			}
			removed++
		}
		if removed == 0 {
			modseq--
			return nil
		}
		if _, err := w.Exec(`UPDATE mailboxes SET highest_modseq = ? WHERE id = ?`, modseq, mailboxID); err != nil {
			return err
		}
		var err error
		orphans, err = collectOrphans(w)
		return err
	}, after: func() { s.removeBlobs(orphans) }})
	return modseq, err
}

// collectOrphans deletes messages no entry references and returns their
// queue IDs, whose files are removed after the commit.
func collectOrphans(w *wtx) ([]string, error) {
	rows, err := w.Query(`SELECT qid FROM messages WHERE refs <= 0 AND inline = 0`)
	if err != nil {
		return nil, err
	}
	var qids []string
	for rows.Next() {
		var q string
		if err := rows.Scan(&q); err != nil {
			rows.Close()
			return nil, err
		}
		qids = append(qids, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, err := w.Exec(`DELETE FROM messages WHERE refs <= 0`); err != nil {
		return nil, err
	}
	return qids, nil
}

func (s *Store) removeBlobs(qids []string) {
	for _, q := range qids {
		if err := s.blobs.Remove(q); err != nil {
			slog.Warn("store: removing message file", "qid", q, "err", err)
		}
	}
}
