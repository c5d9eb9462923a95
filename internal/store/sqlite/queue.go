package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

// queueSchema holds the outbound queue: one row per remote recipient of a
// stored message, holding a reference on it (messages.refs) until the row
// is removed when delivered, bounced or deleted. queue_signatures keeps the
// DKIM-Signature fields of a queued message once an attempt has computed
// them ("" when it is not signed here); they are not needed for durability
// (a lost row means signing again), and go with the message.
const queueSchema = `
CREATE TABLE IF NOT EXISTS queue (
	id           INTEGER PRIMARY KEY,
	message_id   INTEGER NOT NULL REFERENCES messages(id),
	mail_from    TEXT NOT NULL,
	rcpt         TEXT NOT NULL,
	domain       TEXT NOT NULL,
	notify       TEXT NOT NULL DEFAULT '',
	orcpt        TEXT NOT NULL DEFAULT '',
	ret          TEXT NOT NULL DEFAULT '',
	envid        TEXT NOT NULL DEFAULT '',
	held         INTEGER NOT NULL DEFAULT 0,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	created      INTEGER NOT NULL,
	last_error   TEXT NOT NULL DEFAULT '',
	delay_warned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_due ON queue(held, next_attempt);
CREATE INDEX IF NOT EXISTS queue_message ON queue(message_id);
CREATE TABLE IF NOT EXISTS queue_signatures (
	message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	fields     TEXT NOT NULL
);
`

var _ store.QueueStore = (*Store)(nil)

// enqueueTx adds one queue row per remote recipient of a message.
func enqueueTx(w *wtx, msgID int64, d *store.Delivery) error {
	now := unixMilli(time.Now())
	for _, r := range d.Remote {
		addr := r.Address
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			return fmt.Errorf("store: remote recipient %q has no domain", addr)
		}
		domain := strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
		if _, err := w.Exec(`INSERT INTO queue(message_id, mail_from, rcpt, domain, notify, orcpt, ret, envid, next_attempt, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			msgID, d.From, addr, domain, r.Notify, r.ORcpt, d.Ret, d.EnvID, now, now); err != nil {
			return fmt.Errorf("store: enqueue: %w", err)
		}
	}
	return nil
}

// OnEnqueue registers f to run after each commit that queued entries.
func (s *Store) OnEnqueue(f func()) {
	s.enqueueMu.Lock()
	s.onEnqueue = append(s.onEnqueue, f)
	s.enqueueMu.Unlock()
}

func (s *Store) notifyEnqueue() {
	s.enqueueMu.Lock()
	fs := s.onEnqueue
	s.enqueueMu.Unlock()
	for _, f := range fs {
		f()
	}
}

const queueCols = `q.id, m.qid, q.message_id, q.mail_from, q.rcpt, q.domain, q.notify, q.orcpt, q.ret, q.envid, q.held, q.attempts, q.next_attempt, q.created, q.last_error, q.delay_warned, m.size, k.fields`

func scanQueue(sc interface{ Scan(...any) error }) (store.QueueEntry, error) {
	var e store.QueueEntry
	var next, created int64
	var sig sql.NullString
	err := sc.Scan(&e.ID, &e.QueueID, &e.MessageID, &e.From, &e.Recipient, &e.Domain, &e.Notify, &e.ORcpt, &e.Ret, &e.EnvID,
		&e.Held, &e.Attempts, &next, &created, &e.LastError, &e.DelayWarned, &e.Size, &sig)
	e.NextAttempt, e.Created = fromMilli(next), fromMilli(created)
	e.Signature, e.SignatureDone = sig.String, sig.Valid
	return e, err
}

func (s *Store) queryQueue(ctx context.Context, where string, args ...any) ([]store.QueueEntry, error) {
	rows, err := s.rquery(ctx, `SELECT `+queueCols+` FROM queue q JOIN messages m ON m.id = q.message_id LEFT JOIN queue_signatures k ON k.message_id = q.message_id `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.QueueEntry
	for rows.Next() {
		e, err := scanQueue(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DueEntries returns entries due for an attempt, oldest first.
func (s *Store) DueEntries(ctx context.Context, now time.Time, limit int) ([]store.QueueEntry, error) {
	return s.queryQueue(ctx, `WHERE q.held = 0 AND q.next_attempt <= ? ORDER BY q.next_attempt, q.id LIMIT ?`, unixMilli(now), limit)
}

// NextDue returns the earliest next attempt of an entry not held.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var t sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT min(next_attempt) FROM queue WHERE held = 0`).Scan(&t); err != nil {
		return time.Time{}, err
	}
	if !t.Valid {
		return time.Time{}, nil
	}
	return fromMilli(t.Int64), nil
}

// QueueStats counts the queue and finds its oldest entry without reading it.
func (s *Store) QueueStats(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*), min(created) FROM queue`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, err
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, fromMilli(oldest.Int64), nil
}

// QueueEntries lists the whole queue, oldest first.
func (s *Store) QueueEntries(ctx context.Context) ([]store.QueueEntry, error) {
	return s.queryQueue(ctx, `ORDER BY q.created, q.id`)
}

// QueueEntry returns one entry.
func (s *Store) QueueEntry(ctx context.Context, id int64) (store.QueueEntry, error) {
	es, err := s.queryQueue(ctx, `WHERE q.id = ?`, id)
	if err != nil {
		return store.QueueEntry{}, err
	}
	if len(es) == 0 {
		return store.QueueEntry{}, fmt.Errorf("queue entry %d: %w", id, store.ErrNotFound)
	}
	return es[0], nil
}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }

// OpenMessage opens a stored message (without any recipient prefix).
func (s *Store) OpenMessage(ctx context.Context, messageID int64) (store.ReadSeekCloser, error) {
	var qid string
	var inline bool
	var data []byte
	err := s.rqueryRow(ctx, `SELECT m.qid, m.inline, c.data FROM messages m LEFT JOIN contents c ON c.message_id = m.id WHERE m.id = ?`, messageID).Scan(&qid, &inline, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", messageID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if inline {
		return nopSeekCloser{bytes.NewReader(data)}, nil
	}
	return s.blobs.Open(qid)
}

var _ io.Seeker = nopSeekCloser{}

func insertEvents(w *wtx, events []store.Event) error {
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		if _, err := w.Exec(`INSERT INTO events(qid, time, kind, detail) VALUES (?, ?, ?, ?)`, e.QueueID, unixMilli(e.Time), e.Kind, e.Detail); err != nil {
			return err
		}
	}
	return nil
}

// FinishEntries removes entries (delivered, bounced, deleted), releases
// their references on the message and records events, in one commit.
func (s *Store) FinishEntries(ctx context.Context, ids []int64, events []store.Event) error {
	var orphans []string
	return s.write(&writeReq{fn: func(w *wtx) error {
		orphans = orphans[:0]
		for _, id := range ids {
			var msgID int64
			if err := w.QueryRow(`SELECT message_id FROM queue WHERE id = ?`, id).Scan(&msgID); errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			if _, err := w.Exec(`DELETE FROM queue WHERE id = ?`, id); err != nil {
				return err
			}
			if _, err := w.Exec(`UPDATE messages SET refs = refs - 1 WHERE id = ?`, msgID); err != nil {
				return err
			}
		}
		if err := insertEvents(w, events); err != nil {
			return err
		}
		var err error
		orphans, err = collectOrphans(w)
		return err
	}, after: func() { s.removeBlobs(orphans) }})
}

// RescheduleEntries records a failed attempt and when to try again.
func (s *Store) RescheduleEntries(ctx context.Context, ids []int64, next time.Time, lastError string, delayWarned bool, events []store.Event) error {
	return s.exec(func(w *wtx) error {
		for _, id := range ids {
			if _, err := w.Exec(`UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ?, delay_warned = delay_warned OR ? WHERE id = ?`,
				unixMilli(next), lastError, delayWarned, id); err != nil {
				return err
			}
		}
		return insertEvents(w, events)
	})
}

// SaveSignature keeps a message's DKIM-Signature fields for its retries.
func (s *Store) SaveSignature(ctx context.Context, messageID int64, fields string) error {
	return s.exec(func(w *wtx) error {
		_, err := w.Exec(`INSERT OR REPLACE INTO queue_signatures(message_id, fields) SELECT id, ? FROM messages WHERE id = ?`, fields, messageID)
		return err
	})
}

// RetryEntries makes entries due now; all entries when ids is empty.
func (s *Store) RetryEntries(ctx context.Context, ids []int64) (int, error) {
	n := 0
	err := s.write(&writeReq{fn: func(w *wtx) error {
		n = 0
		now := unixMilli(time.Now())
		if len(ids) == 0 {
			res, err := w.Exec(`UPDATE queue SET next_attempt = ? WHERE held = 0`, now)
			if err != nil {
				return err
			}
			c, _ := res.RowsAffected()
			n = int(c)
			return nil
		}
		for _, id := range ids {
			res, err := w.Exec(`UPDATE queue SET next_attempt = ?, held = 0 WHERE id = ?`, now, id)
			if err != nil {
				return err
			}
			c, _ := res.RowsAffected()
			n += int(c)
		}
		return nil
	}, after: s.notifyEnqueue})
	return n, err
}

// HoldEntries holds (or releases) entries: held entries are never attempted.
func (s *Store) HoldEntries(ctx context.Context, ids []int64, hold bool) (int, error) {
	n := 0
	err := s.write(&writeReq{fn: func(w *wtx) error {
		n = 0
		for _, id := range ids {
			res, err := w.Exec(`UPDATE queue SET held = ? WHERE id = ?`, hold, id)
			if err != nil {
				return err
			}
			c, _ := res.RowsAffected()
			n += int(c)
		}
		return nil
	}, after: s.notifyEnqueue})
	return n, err
}
