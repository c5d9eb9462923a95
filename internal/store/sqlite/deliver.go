package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/postern-mail/postern/internal/blob"
	"github.com/postern-mail/postern/internal/store"
)

// NewBlob starts a message file in blobs/incoming.
func (s *Store) NewBlob() (store.BlobWriter, error) {
	return s.blobs.Create()
}

// Deliver fsyncs the message file in the caller's goroutine, then joins the
// next group commit, which records the message once and files an entry into
// each recipient's mailbox. It returns nil only once all of that is durable.
func (s *Store) Deliver(ctx context.Context, d *store.Delivery) error {
	bw, ok := d.Blob.(*blob.Writer)
	if !ok {
		return errors.New("store: Deliver needs a blob from NewBlob")
	}
	if len(d.Recipients)+len(d.Remote) == 0 {
		bw.Abort()
		return errors.New("store: delivery without recipients")
	}
	if err := bw.Finish(); err != nil {
		return err
	}
	qid := bw.QueueID()
	if d.Received.IsZero() {
		d.Received = time.Now()
	}
	data, inline := bw.Inline()
	var changes []store.Change
	req := &writeReq{
		syncIncoming: !inline,
		fn: func(w *wtx) error {
			var err error
			changes, err = deliverTx(w, qid, bw.Size(), data, inline, d)
			return err
		},
		after: func() {
			if !inline {
				if err := s.blobs.Promote(qid); err != nil {
					// Readers fall back to incoming/ and Recover retries at start.
					slog.Warn("store: promoting message file", "qid", qid, "err", err)
				}
			}
			// IMAP sessions learn of the new message (EXISTS) from here.
			s.changes.Publish(changes...)
			if len(d.Remote) > 0 {
				s.notifyEnqueue()
			}
		},
	}
	if err := s.write(req); err != nil {
		bw.Abort()
		return err
	}
	return nil
}

// deliverTx records the message once and files an entry per recipient; it
// returns the changes to publish after the commit.
func deliverTx(w *wtx, qid string, size int64, data []byte, inline bool, d *store.Delivery) ([]store.Change, error) {
	msgID, err := insertMessage(w, qid, size, data, inline, d.From, d.HeaderMessageID, d.Received, len(d.Recipients)+len(d.Remote))
	if err != nil {
		return nil, err
	}
	if err := enqueueTx(w, msgID, d); err != nil {
		return nil, err
	}
	var changes []store.Change
	for _, r := range d.Recipients {
		name := r.Mailbox
		if name == "" || strings.EqualFold(name, "INBOX") {
			name = "INBOX"
		}
		mbID, err := deliveryMailbox(w, r.UserID, name)
		if err != nil {
			return nil, fmt.Errorf("store: mailbox %s of user %d: %w", name, r.UserID, err)
		}
		uid, modseq, _, err := addEntry(w, mbID, msgID, r.Flags, nil, d.Received, r.Prefix, size+int64(len(r.Prefix)))
		if err != nil {
			return nil, err
		}
		changes = append(changes, store.Change{Kind: store.ChangeNew, MailboxID: mbID, UID: uid, ModSeq: modseq, Flags: r.Flags})
	}
	for _, e := range d.Events {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		if _, err := w.Exec(`INSERT INTO events(qid, time, kind, detail) VALUES (?, ?, ?, ?)`, qid, unixMilli(e.Time), e.Kind, e.Detail); err != nil {
			return nil, err
		}
	}
	return changes, nil
}

func normalizeMsgID(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	return s
}

// AddEvent records one step of a message's journey.
func (s *Store) AddEvent(ctx context.Context, e store.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return s.exec(func(w *wtx) error {
		_, err := w.Exec(`INSERT INTO events(qid, time, kind, detail) VALUES (?, ?, ?, ?)`, e.QueueID, unixMilli(e.Time), e.Kind, e.Detail)
		return err
	})
}

// Events returns the journey of messages with that queue ID or Message-ID.
func (s *Store) Events(ctx context.Context, id string) ([]store.Event, error) {
	evs, err := s.events(ctx, `WHERE qid = ? OR qid IN (SELECT qid FROM messages WHERE header_msgid = ? AND header_msgid != '') ORDER BY time, id`, id, normalizeMsgID(id))
	if err == nil && len(evs) == 0 && normalizeMsgID(id) != "" {
		// The message itself may be gone (delivered to remote recipients
		// only, or expunged everywhere) while its events stay: find it by
		// the Message-ID its "received" event recorded. A scan, but only
		// for this rare, interactive case.
		evs, err = s.events(ctx, `WHERE qid IN (SELECT qid FROM events WHERE kind = 'received' AND instr(detail, ?) > 0) ORDER BY time, id`,
			"msgid=<"+normalizeMsgID(id)+">")
	}
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	return evs, nil
}

func (s *Store) events(ctx context.Context, where string, args ...any) ([]store.Event, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT qid, time, kind, detail FROM events `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var e store.Event
		var t int64
		if err := rows.Scan(&e.QueueID, &t, &e.Kind, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = fromMilli(t)
		out = append(out, e)
	}
	return out, rows.Err()
}

// deliveryMailbox finds the mailbox a delivery is filed into. A default
// mailbox other than INBOX (Junk, for mail that failed sender checks) that
// the user renamed or deleted is replaced by the mailbox with its special
// use, and failing that by INBOX: a delivery never fails for want of it.
func deliveryMailbox(w *wtx, userID int64, name string) (int64, error) {
	var id int64
	err := w.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name).Scan(&id)
	if !errors.Is(err, sql.ErrNoRows) || name == "INBOX" {
		return id, err
	}
	for _, mb := range store.DefaultMailboxes {
		if mb.Name == name && mb.SpecialUse != "" {
			err = w.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND special_use = ? ORDER BY id LIMIT 1`, userID, mb.SpecialUse).Scan(&id)
			if !errors.Is(err, sql.ErrNoRows) {
				return id, err
			}
		}
	}
	err = w.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND name = 'INBOX'`, userID).Scan(&id)
	return id, err
}
