package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/postern-mail/postern/internal/blob"
	"github.com/postern-mail/postern/internal/store"
)

// insertMessage records stored contents once; refs counts the entries that
// will point at it.
func insertMessage(w *wtx, qid string, size int64, data []byte, inline bool, from, headerMsgID string, received time.Time, refs int) (int64, error) {
	res, err := w.Exec(`INSERT INTO messages(qid, size, received, mail_from, header_msgid, inline, refs) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		qid, size, unixMilli(received), from, normalizeMsgID(headerMsgID), inline, refs)
	if err != nil {
		return 0, fmt.Errorf("store: insert message: %w", err)
	}
	msgID, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	if inline {
		if _, err := w.Exec(`INSERT INTO contents(message_id, data) VALUES (?, ?)`, msgID, data); err != nil {
			return 0, fmt.Errorf("store: insert contents: %w", err)
		}
	}
	return msgID, nil
}

// addEntry files a stored message into a mailbox under its next UID, with a
// new MODSEQ, and keeps the mailbox counts. It returns the UID, the MODSEQ
// and the keywords as stored (spelled as the mailbox first saw them).
func addEntry(w *wtx, mbID, msgID int64, flags store.Flags, keywords []string, date time.Time, prefix []byte, size int64) (uint32, uint64, []string, error) {
	var uid uint32
	var modseq uint64
	if err := w.QueryRow(`SELECT uidnext, highest_modseq + 1 FROM mailboxes WHERE id = ?`, mbID).Scan(&uid, &modseq); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, nil, fmt.Errorf("mailbox %d: %w", mbID, store.ErrNotFound)
		}
		return 0, 0, nil, err
	}
	if prefix == nil {
		prefix = []byte{}
	}
	if _, err := w.Exec(`INSERT INTO entries(mailbox_id, uid, message_id, flags, modseq, internal_date, prefix, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		mbID, uid, msgID, flags, modseq, unixMilli(date), prefix, size); err != nil {
		return 0, 0, nil, fmt.Errorf("store: insert entry: %w", err)
	}
	kws, err := canonKeywords(w, mbID, keywords, true)
	if err != nil {
		return 0, 0, nil, err
	}
	if err := setEntryKeywords(w, mbID, uid, kws); err != nil {
		return 0, 0, nil, err
	}
	unseen := 1
	if flags&store.FlagSeen != 0 {
		unseen = 0
	}
	if _, err := w.Exec(`UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = ?, messages = messages + 1, unseen = unseen + ?, size = size + ? WHERE id = ?`,
		modseq, unseen, size, mbID); err != nil {
		return 0, 0, nil, err
	}
	return uid, modseq, kws, nil
}

// canonKeywords removes duplicates (keywords compare case-insensitively,
// RFC 9051 2.3.2) and spells each as the mailbox first saw it; with
// remember, new ones are added to the mailbox's keyword list.
func canonKeywords(w *wtx, mbID int64, keywords []string, remember bool) ([]string, error) {
	var out []string
	for _, k := range keywords {
		if k == "" || slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, k) }) {
			continue
		}
		var known string
		err := w.QueryRow(`SELECT keyword FROM mailbox_keywords WHERE mailbox_id = ? AND keyword = ? COLLATE NOCASE`, mbID, k).Scan(&known)
		switch {
		case err == nil:
			k = known
		case errors.Is(err, sql.ErrNoRows):
			if remember {
				if _, err := w.Exec(`INSERT INTO mailbox_keywords(mailbox_id, keyword) VALUES (?, ?)`, mbID, k); err != nil {
					return nil, err
				}
			}
		default:
			return nil, err
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

func setEntryKeywords(w *wtx, mbID int64, uid uint32, kws []string) error {
	if _, err := w.Exec(`DELETE FROM keywords WHERE mailbox_id = ? AND uid = ?`, mbID, uid); err != nil {
		return err
	}
	for _, k := range kws {
		if _, err := w.Exec(`INSERT INTO keywords(mailbox_id, uid, keyword) VALUES (?, ?, ?)`, mbID, uid, k); err != nil {
			return err
		}
	}
	return nil
}

func entryKeywords(w *wtx, mbID int64, uid uint32) ([]string, error) {
	rows, err := w.Query(`SELECT keyword FROM keywords WHERE mailbox_id = ? AND uid = ? ORDER BY keyword`, mbID, uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// UIDs lists a mailbox's UIDs in ascending order, from the entry cache
// if it holds the mailbox. If not, they come back as one group_concat
// string rather than a row each (database/sql's per-row cost would
// dominate the SELECT of a large mailbox), and the cache is left to the
// first FETCH or SEARCH: SELECT stays as quick as reading the UIDs.
func (s *Store) UIDs(ctx context.Context, mailboxID int64) ([]uint32, error) {
	if !s.cache.has(mailboxID) {
		return s.uidsPacked(ctx, mailboxID)
	}
	var out []uint32
	err := s.withBox(ctx, mailboxID, func(entries []cachedEntry) {
		out = make([]uint32, len(entries))
		for i := range entries {
			out[i] = entries[i].uid
		}
	})
	if errors.Is(err, store.ErrNotFound) {
		return []uint32{}, nil
	}
	return out, err
}

func (s *Store) uidsPacked(ctx context.Context, mailboxID int64) ([]uint32, error) {
	var list sql.NullString
	var n sql.NullInt64 // NULL for a mailbox that does not exist
	if err := s.rqueryRow(ctx, `SELECT (SELECT group_concat(uid) FROM (SELECT uid FROM entries WHERE mailbox_id = ?1 ORDER BY uid)),
		(SELECT messages FROM mailboxes WHERE id = ?1)`, mailboxID).Scan(&list, &n); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	out := make([]uint32, 0, n.Int64)
	var v uint32
	digits := false
	for i := 0; i < len(list.String); i++ {
		c := list.String[i]
		if c >= '0' && c <= '9' {
			v = v*10 + uint32(c-'0')
			digits = true
			continue
		}
		if digits {
			out = append(out, v)
		}
		v, digits = 0, false
	}
	if digits {
		out = append(out, v)
	}
	return out, nil
}

// FirstUnseen returns the lowest UID without \Seen, 0 if every message is
// seen, from the entry cache if it holds the mailbox.
func (s *Store) FirstUnseen(ctx context.Context, mailboxID int64) (uint32, error) {
	if !s.cache.has(mailboxID) {
		var uid sql.NullInt64
		err := s.rqueryRow(ctx, `SELECT min(uid) FROM entries WHERE mailbox_id = ? AND flags & ? = 0`, mailboxID, store.FlagSeen).Scan(&uid)
		return uint32(uid.Int64), err
	}
	var uid uint32
	err := s.withBox(ctx, mailboxID, func(entries []cachedEntry) {
		for i := range entries {
			if entries[i].flags&store.FlagSeen == 0 {
				uid = entries[i].uid
				return
			}
		}
	})
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return uid, err
}

// cacheMinRead is the number of UIDs from which EntriesByUID brings a
// mailbox into the entry cache; fewer are read from the index unless the
// mailbox is cached already. A variable for tests.
var cacheMinRead = 256

// EntriesByUID returns the entries among uids (in any order), by UID, with
// their keywords (without the stored message's queue ID and sender), from
// the entry cache, or from the index for a few UIDs of a mailbox not in
// the cache and for mailboxes too large for it.
func (s *Store) EntriesByUID(ctx context.Context, mailboxID int64, uids []uint32) ([]store.Entry, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	sorted := uids
	if !slices.IsSorted(uids) {
		sorted = slices.Clone(uids)
		slices.Sort(sorted)
	}
	if len(sorted) < cacheMinRead && !s.cache.has(mailboxID) {
		return s.entriesByRuns(ctx, mailboxID, sorted)
	}
	var out []store.Entry
	err := s.withBox(ctx, mailboxID, func(entries []cachedEntry) {
		out = make([]store.Entry, 0, min(len(sorted), len(entries)))
		// Walk both in order; jump by binary search over gaps.
		j := 0
		for i, uid := range sorted {
			if i > 0 && uid == sorted[i-1] {
				continue
			}
			if j < len(entries) && entries[j].uid < uid {
				k, _ := slices.BinarySearchFunc(entries[j:], uid, func(e cachedEntry, u uint32) int { return int(int64(e.uid) - int64(u)) })
				j += k
			}
			if j < len(entries) && entries[j].uid == uid {
				out = append(out, entries[j].entry(mailboxID))
				j++
			}
		}
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if errors.Is(err, errTooLarge) {
		return s.entriesByRuns(ctx, mailboxID, sorted)
	}
	return out, err
}

// entriesByRuns reads the entries among sorted from the index: contiguous
// runs of UIDs with one range query each, or one query over the whole span
// when the set is fragmented.
func (s *Store) entriesByRuns(ctx context.Context, mailboxID int64, sorted []uint32) ([]store.Entry, error) {
	type run struct{ lo, hi uint32 }
	var runs []run
	for _, u := range sorted {
		if n := len(runs); n > 0 && runs[n-1].hi+1 >= u {
			runs[n-1].hi = u
		} else {
			runs = append(runs, run{u, u})
		}
	}
	filter := false
	if len(runs) > 16 {
		runs = []run{{sorted[0], sorted[len(sorted)-1]}}
		filter = true
	}
	var out []store.Entry
	for _, r := range runs {
		es, err := s.entriesPacked(ctx, mailboxID, r.lo, r.hi)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if filter {
				if _, ok := slices.BinarySearch(sorted, e.UID); !ok {
					continue
				}
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// entriesPacked reads the entries with lo <= uid <= hi, with keywords,
// but without the stored message's queue ID and sender. The numbers come
// back as one group_concat string: a row each through database/sql cost
// more than SQLite's work for FETCH 1:* of a large mailbox.
func (s *Store) entriesPacked(ctx context.Context, mailboxID int64, lo, hi uint32) ([]store.Entry, error) {
	var packed sql.NullString
	if err := s.rqueryRow(ctx, `SELECT group_concat(uid || ' ' || flags || ' ' || modseq || ' ' || internal_date || ' ' || size || ' ' || message_id, ' ')
		FROM (SELECT uid, flags, modseq, internal_date, size, message_id FROM entries WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid)`,
		mailboxID, lo, hi).Scan(&packed); err != nil {
		return nil, err
	}
	var out []store.Entry
	var f [6]int64
	k := 0
	num, neg, digits := int64(0), false, false
	str := packed.String
	for i := 0; i <= len(str); i++ {
		if i < len(str) && str[i] >= '0' && str[i] <= '9' {
			num = num*10 + int64(str[i]-'0')
			digits = true
			continue
		}
		if i < len(str) && str[i] == '-' {
			neg = true
			continue
		}
		if !digits {
			continue
		}
		if neg {
			num = -num
		}
		f[k] = num
		num, neg, digits = 0, false, false
		if k++; k == len(f) {
			out = append(out, store.Entry{MailboxID: mailboxID, UID: uint32(f[0]), Flags: store.Flags(f[1]), ModSeq: uint64(f[2]),
				InternalDate: fromMilli(f[3]), Size: f[4], MessageID: f[5]})
			k = 0
		}
	}
	return s.addKeywords(ctx, mailboxID, lo, hi, out)
}

// entriesRange reads the entries with lo <= uid <= hi, with keywords.
func (s *Store) entriesRange(ctx context.Context, mailboxID int64, lo, hi uint32) ([]store.Entry, error) {
	rows, err := s.rquery(ctx, `SELECT e.uid, e.message_id, m.qid, m.mail_from, e.flags, e.modseq, e.internal_date, e.size
		FROM entries e JOIN messages m ON m.id = e.message_id WHERE e.mailbox_id = ? AND e.uid BETWEEN ? AND ? ORDER BY e.uid`, mailboxID, lo, hi)
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
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	return s.addKeywords(ctx, mailboxID, lo, hi, out)
}

// addKeywords fills in the keywords of out, entries with lo <= uid <= hi
// in UID order.
func (s *Store) addKeywords(ctx context.Context, mailboxID int64, lo, hi uint32, out []store.Entry) ([]store.Entry, error) {
	krows, err := s.rquery(ctx, `SELECT uid, keyword FROM keywords WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid, keyword`, mailboxID, lo, hi)
	if err != nil {
		return nil, err
	}
	defer krows.Close()
	i := 0
	for krows.Next() {
		var uid uint32
		var k string
		if err := krows.Scan(&uid, &k); err != nil {
			return nil, err
		}
		for i < len(out) && out[i].UID < uid {
			i++
		}
		if i < len(out) && out[i].UID == uid {
			out[i].Keywords = append(out[i].Keywords, k)
		}
	}
	return out, krows.Err()
}

// UpdateFlags applies a flag change to the given UIDs. Messages whose flags
// and keywords end up unchanged keep their MODSEQ; the others and the
// mailbox get one new MODSEQ (RFC 7162 3.1). Changes are published after
// the commit.
func (s *Store) UpdateFlags(ctx context.Context, mailboxID int64, uids []uint32, u store.FlagUpdate) ([]store.FlagResult, error) {
	var results []store.FlagResult
	err := s.write(&writeReq{noFsync: true, fn: func(w *wtx) error {
		results = results[:0]
		var modseq uint64
		if err := w.QueryRow(`SELECT highest_modseq + 1 FROM mailboxes WHERE id = ?`, mailboxID).Scan(&modseq); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNotFound)
			}
			return err
		}
		kws, err := canonKeywords(w, mailboxID, u.Keywords, u.Op != store.FlagsRemove && len(uids) > 0)
		if err != nil {
			return err
		}
		unseenDelta := 0
		for _, uid := range uids {
			var old store.Flags
			if err := w.QueryRow(`SELECT flags FROM entries WHERE mailbox_id = ? AND uid = ?`, mailboxID, uid).Scan(&old); errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			oldKws, err := entryKeywords(w, mailboxID, uid)
			if err != nil {
				return err
			}
			flags, newKws := applyFlags(u.Op, old, oldKws, u.Flags, kws)
			kwChanged := !slices.Equal(oldKws, newKws)
			if flags == old && !kwChanged {
				continue
			}
			if _, err := w.Exec(`UPDATE entries SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`, flags, modseq, mailboxID, uid); err != nil {
				return err
			}
			if kwChanged {
				if err := setEntryKeywords(w, mailboxID, uid, newKws); err != nil {
					return err
				}
			}
			if old&store.FlagSeen == 0 && flags&store.FlagSeen != 0 {
				unseenDelta--
			} else if old&store.FlagSeen != 0 && flags&store.FlagSeen == 0 {
				unseenDelta++
			}
			results = append(results, store.FlagResult{UID: uid, Flags: flags, Keywords: newKws, ModSeq: modseq})
		}
		if len(results) == 0 {
			return nil
		}
		_, err = w.Exec(`UPDATE mailboxes SET highest_modseq = ?, unseen = unseen + ? WHERE id = ?`, modseq, unseenDelta, mailboxID)
		return err
	}, after: func() {
		changes := make([]store.Change, len(results))
		for i, r := range results {
			changes[i] = store.Change{Kind: store.ChangeFlags, MailboxID: mailboxID, UID: r.UID, ModSeq: r.ModSeq, Flags: r.Flags, Keywords: r.Keywords, Origin: u.Origin}
		}
		s.changes.Publish(changes...)
	}})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// applyFlags computes flags and keywords after op; keywords stay sorted.
func applyFlags(op store.FlagOp, old store.Flags, oldKws []string, flags store.Flags, kws []string) (store.Flags, []string) {
	has := func(list []string, k string) bool {
		return slices.ContainsFunc(list, func(o string) bool { return strings.EqualFold(o, k) })
	}
	switch op {
	case store.FlagsAdd:
		out := slices.Clone(oldKws)
		for _, k := range kws {
			if !has(out, k) {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return old | flags, out
	case store.FlagsRemove:
		var out []string
		for _, k := range oldKws {
			if !has(kws, k) {
				out = append(out, k)
			}
		}
		return old &^ flags, out
	default:
		return flags, slices.Clone(kws)
	}
}

// AppendMessage stores a client's message (IMAP APPEND) with the same
// durability as Deliver: the file is synced, then the index commits.
func (s *Store) AppendMessage(ctx context.Context, mailboxID int64, a *store.Append) (uint32, uint32, error) {
	bw, ok := a.Blob.(*blob.Writer)
	if !ok {
		return 0, 0, errors.New("store: AppendMessage needs a blob from NewBlob")
	}
	if err := bw.Finish(); err != nil {
		return 0, 0, err
	}
	qid := bw.QueueID()
	date := a.InternalDate
	if date.IsZero() {
		date = time.Now()
	}
	data, inline := bw.Inline()
	var uid, uv uint32
	var ch store.Change
	req := &writeReq{syncIncoming: !inline, fn: func(w *wtx) error {
		if err := w.QueryRow(`SELECT uidvalidity FROM mailboxes WHERE id = ?`, mailboxID).Scan(&uv); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		msgID, err := insertMessage(w, qid, bw.Size(), data, inline, "", "", time.Now(), 1)
		if err != nil {
			return err
		}
		var modseq uint64
		var kws []string
		uid, modseq, kws, err = addEntry(w, mailboxID, msgID, a.Flags, a.Keywords, date, nil, bw.Size())
		ch = store.Change{Kind: store.ChangeNew, MailboxID: mailboxID, UID: uid, ModSeq: modseq, Flags: a.Flags, Keywords: kws}
		return err
	}, after: func() {
		if !inline {
			if err := s.blobs.Promote(qid); err != nil {
				slog.Warn("store: promoting message file", "qid", qid, "err", err)
			}
		}
		s.changes.Publish(ch)
	}}
	if err := s.write(req); err != nil {
		bw.Abort()
		return 0, 0, err
	}
	return uid, uv, nil
}
