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

const mailboxCols = `id, user_id, name, special_use, EXISTS(SELECT 1 FROM subscriptions s WHERE s.user_id = mailboxes.user_id AND s.name = mailboxes.name), uidvalidity, uidnext, highest_modseq, messages, unseen, size`

func scanMailbox(sc interface{ Scan(...any) error }) (store.Mailbox, error) {
	var m store.Mailbox
	err := sc.Scan(&m.ID, &m.UserID, &m.Name, &m.SpecialUse, &m.Subscribed, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq, &m.Messages, &m.Unseen, &m.Size)
	return m, err
}

// Mailboxes lists a user's mailboxes, INBOX first.
func (s *Store) Mailboxes(ctx context.Context, userID int64) ([]store.Mailbox, error) {
	rows, err := s.rquery(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = ? ORDER BY name != 'INBOX', name`, userID)
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
	m, err := scanMailbox(s.rqueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %s: %w", name, store.ErrNotFound)
	}
	return m, err
}

// Entries lists a mailbox's messages by UID, with their keywords.
func (s *Store) Entries(ctx context.Context, mailboxID int64) ([]store.Entry, error) {
	return s.entriesRange(ctx, mailboxID, 0, 0xffffffff)
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
	err := s.rqueryRow(ctx, `SELECT e.prefix, m.qid, m.inline, c.data FROM entries e JOIN messages m ON m.id = e.message_id
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

// SetFlags replaces the system flags of the given UIDs (and clears their
// keywords); each changed entry and the mailbox get a new MODSEQ (RFC 7162
// 3.1). It returns the mailbox's MODSEQ after the change.
func (s *Store) SetFlags(ctx context.Context, mailboxID int64, uids []uint32, flags store.Flags) (uint64, error) {
	res, err := s.UpdateFlags(ctx, mailboxID, uids, store.FlagUpdate{Op: store.FlagsSet, Flags: flags})
	if err != nil {
		return 0, err
	}
	if len(res) > 0 {
		return res[0].ModSeq, nil
	}
	mb, err := s.mailboxByID(ctx, mailboxID)
	return mb.HighestModSeq, err
}

func (s *Store) mailboxByID(ctx context.Context, id int64) (store.Mailbox, error) {
	m, err := scanMailbox(s.rqueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %d: %w", id, store.ErrNotFound)
	}
	return m, err
}

// Expunge removes the given UIDs, remembers them with the new MODSEQ (for
// QRESYNC's VANISHED), frees message files no longer referenced and
// publishes the expunges.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) (uint64, error) {
	var modseq uint64
	var orphans []string
	var removed []uint32
	err := s.write(&writeReq{fn: func(w *wtx) error {
		orphans = orphans[:0]
		var err error
		removed, modseq, err = expungeEntries(w, mailboxID, uids)
		if err != nil || len(removed) == 0 {
			return err
		}
		orphans, err = collectOrphans(w)
		return err
	}, after: func() {
		s.removeBlobs(orphans)
		changes := make([]store.Change, len(removed))
		for i, uid := range removed {
			changes[i] = store.Change{Kind: store.ChangeExpunge, MailboxID: mailboxID, UID: uid, ModSeq: modseq}
		}
		s.changes.Publish(changes...)
	}})
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
