package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/postern-mail/postern/internal/store"
)

// CopyMessages files the messages into dst under new UIDs, sharing their
// contents (the stored message's reference count goes up).
func (s *Store) CopyMessages(ctx context.Context, src int64, uids []uint32, dst int64) (store.CopyResult, error) {
	return s.copyMessages(src, uids, dst, false)
}

// MoveMessages copies and expunges in one commit (RFC 6851).
func (s *Store) MoveMessages(ctx context.Context, src int64, uids []uint32, dst int64) (store.CopyResult, error) {
	return s.copyMessages(src, uids, dst, true)
}

func (s *Store) copyMessages(src int64, uids []uint32, dst int64, move bool) (store.CopyResult, error) {
	var res store.CopyResult
	var changes []store.Change
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	err := s.write(&writeReq{fn: func(w *wtx) error {
		res, changes = store.CopyResult{}, changes[:0]
		if err := w.QueryRow(`SELECT uidvalidity FROM mailboxes WHERE id = ?`, dst).Scan(&res.UIDValidity); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox %d: %w", dst, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		for _, uid := range sorted {
			var msgID, size, date int64
			var flags store.Flags
			var prefix []byte
			if err := w.QueryRow(`SELECT message_id, flags, internal_date, prefix, size FROM entries WHERE mailbox_id = ? AND uid = ?`, src, uid).
				Scan(&msgID, &flags, &date, &prefix, &size); errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			kws, err := entryKeywords(w, src, uid)
			if err != nil {
				return err
			}
			newUID, modseq, kws, err := addEntry(w, dst, msgID, flags, kws, fromMilli(date), prefix, size)
			if err != nil {
				return err
			}
			if _, err := w.Exec(`UPDATE messages SET refs = refs + 1 WHERE id = ?`, msgID); err != nil {
				return err
			}
			res.SourceUIDs = append(res.SourceUIDs, uid)
			res.DestUIDs = append(res.DestUIDs, newUID)
			changes = append(changes, store.Change{Kind: store.ChangeNew, MailboxID: dst, UID: newUID, ModSeq: modseq, Flags: flags, Keywords: kws})
		}
		if !move || len(res.SourceUIDs) == 0 {
			return nil
		}
		removed, modseq, err := expungeEntries(w, src, res.SourceUIDs)
		if err != nil {
			return err
		}
		for _, uid := range removed {
			changes = append(changes, store.Change{Kind: store.ChangeExpunge, MailboxID: src, UID: uid, ModSeq: modseq})
		}
		return nil
	}, after: func() { s.changes.Publish(changes...) }})
	return res, err
}

// expungeEntries removes entries, records them as expunged with one new
// MODSEQ and drops the message references; the caller collects orphans.
func expungeEntries(w *wtx, mailboxID int64, uids []uint32) ([]uint32, uint64, error) {
	var modseq uint64
	if err := w.QueryRow(`SELECT highest_modseq + 1 FROM mailboxes WHERE id = ?`, mailboxID).Scan(&modseq); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, 0, fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNotFound)
		}
		return nil, 0, err
	}
	var removed []uint32
	for _, uid := range uids {
		var msgID, size int64
		var flags store.Flags
		if err := w.QueryRow(`SELECT message_id, flags, size FROM entries WHERE mailbox_id = ? AND uid = ?`, mailboxID, uid).Scan(&msgID, &flags, &size); errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, 0, err
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
				return nil, 0, err
			}
		}
		removed = append(removed, uid)
	}
	if len(removed) == 0 {
		return nil, modseq - 1, nil
	}
	if _, err := w.Exec(`UPDATE mailboxes SET highest_modseq = ? WHERE id = ?`, modseq, mailboxID); err != nil {
		return nil, 0, err
	}
	return removed, modseq, nil
}
