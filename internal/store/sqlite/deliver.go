package sqlite

import (
	"context"
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
	if len(d.Recipients) == 0 {
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
	req := &writeReq{
		syncIncoming: !inline,
		fn:           func(w *wtx) error { return deliverTx(w, qid, bw.Size(), data, inline, d) },
	}
	if !inline {
		req.after = func() {
			if err := s.blobs.Promote(qid); err != nil {
				// Readers fall back to incoming/ and Recover retries at start.
				slog.Warn("store: promoting message file", "qid", qid, "err", err)
			}
		}
	}
	if err := s.write(req); err != nil {
		bw.Abort()
		return err
	}
	return nil
}

func deliverTx(w *wtx, qid string, size int64, data []byte, inline bool, d *store.Delivery) error {
	res, err := w.Exec(`INSERT INTO messages(qid, size, received, mail_from, header_msgid, inline, refs) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		qid, size, unixMilli(d.Received), d.From, normalizeMsgID(d.HeaderMessageID), inline, len(d.Recipients))
	if err != nil {
		return fmt.Errorf("store: insert message: %w", err)
	}
	msgID, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if inline {
		if _, err := w.Exec(`INSERT INTO contents(message_id, data) VALUES (?, ?)`, msgID, data); err != nil {
			return fmt.Errorf("store: insert contents: %w", err)
		}
	}
	for _, r := range d.Recipients {
		name := r.Mailbox
		if name == "" || strings.EqualFold(name, "INBOX") {
			name = "INBOX"
		}
		var mbID int64
		var uid uint32
		var modseq uint64
		if err := w.QueryRow(`SELECT id, uidnext, highest_modseq + 1 FROM mailboxes WHERE user_id = ? AND name = ?`, r.UserID, name).Scan(&mbID, &uid, &modseq); err != nil {
			return fmt.Errorf("store: mailbox %s of user %d: %w", name, r.UserID, err)
		}
		entrySize := size + int64(len(r.Prefix))
		if _, err := w.Exec(`INSERT INTO entries(mailbox_id, uid, message_id, flags, modseq, internal_date, prefix, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			mbID, uid, msgID, r.Flags, modseq, unixMilli(d.Received), r.Prefix, entrySize); err != nil {
			return fmt.Errorf("store: insert entry: %w", err)
		}
		unseen := 1
		if r.Flags&store.FlagSeen != 0 {
			unseen = 0
		}
		if _, err := w.Exec(`UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = ?, messages = messages + 1, unseen = unseen + ?, size = size + ? WHERE id = ?`,
			modseq, unseen, entrySize, mbID); err != nil {
			return err
		}
	}
	for _, e := range d.Events {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		if _, err := w.Exec(`INSERT INTO events(qid, time, kind, detail) VALUES (?, ?, ?, ?)`, qid, unixMilli(e.Time), e.Kind, e.Detail); err != nil {
			return err
		}
	}
	return nil
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
	rows, err := s.rdb.QueryContext(ctx, `SELECT qid, time, kind, detail FROM events
		WHERE qid = ? OR qid IN (SELECT qid FROM messages WHERE header_msgid = ? AND header_msgid != '') ORDER BY time, id`, id, normalizeMsgID(id))
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
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	return out, nil
}
