package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/postern-mail/postern/internal/store"
)

// maxCachedEntries bounds the entries the cache holds in all (about 70
// bytes each); a mailbox with more than half as many is read from the
// index each time. A variable for tests.
var maxCachedEntries = 1 << 19

// entryCache keeps the entries (UID, flags, keywords, MODSEQ, date, size)
// of recently read mailboxes, so that SELECT, FETCH 1:* (FLAGS) and SEARCH
// read only what changed since the last read, as a CONDSTORE client does:
// the entries whose MODSEQ is above the cached one and the UIDs expunged
// since (both indexed by MODSEQ), rather than the whole mailbox. Every
// read first checks the mailbox's row (UIDVALIDITY, HIGHESTMODSEQ), so
// that changes committed by another process sharing the data directory are
// seen too: every change to a mailbox's entries raises its HIGHESTMODSEQ.
type entryCache struct {
	mu    sync.Mutex
	boxes map[int64]*cachedBox
	total int    // entries held, at most maxCachedEntries
	clock uint64 // advanced at each use, for eviction
}

type cachedBox struct {
	id          int64
	mu          sync.Mutex // held while the box is read or brought up to date
	loaded      bool
	uidValidity uint32
	modseq      uint64 // the mailbox's HIGHESTMODSEQ the entries reflect at least
	entries     []cachedEntry

	// Under entryCache.mu:
	used    uint64 // entryCache.clock at the last use
	counted int    // entries counted in entryCache.total
	gone    bool   // evicted or dropped
}

// cachedEntry is a store.Entry without the mailbox ID and with the date in
// milliseconds, to keep it small.
type cachedEntry struct {
	uid      uint32
	flags    store.Flags
	modseq   uint64
	date     int64
	size     int64
	msgID    int64
	keywords []string // never modified in place: replaced
}

func (c *cachedEntry) entry(mailboxID int64) store.Entry {
	return store.Entry{MailboxID: mailboxID, UID: c.uid, Flags: c.flags, ModSeq: c.modseq,
		InternalDate: fromMilli(c.date), Size: c.size, MessageID: c.msgID, Keywords: c.keywords}
}

// errTooLarge says that a mailbox has too many messages for the cache.
var errTooLarge = errors.New("store: mailbox too large for the entry cache")

// withBox calls fn with the mailbox's cached entries, brought up to date,
// under the box's lock (fn must not keep them). It returns
// store.ErrNotFound for a mailbox that does not exist, and errTooLarge
// (reading nothing) for one with more than half of maxCachedEntries.
func (s *Store) withBox(ctx context.Context, mailboxID int64, fn func(entries []cachedEntry)) error {
	var uv uint32
	var modseq uint64
	var messages int
	if err := s.rqueryRow(ctx, `SELECT uidvalidity, highest_modseq, messages FROM mailboxes WHERE id = ?`, mailboxID).Scan(&uv, &modseq, &messages); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			s.cache.drop(mailboxID)
			return store.ErrNotFound
		}
		return err
	}
	c := &s.cache
	if messages > maxCachedEntries/2 {
		c.drop(mailboxID)
		return errTooLarge
	}
	c.mu.Lock()
	if c.boxes == nil {
		c.boxes = map[int64]*cachedBox{}
	}
	box := c.boxes[mailboxID]
	if box == nil {
		box = &cachedBox{id: mailboxID}
		c.boxes[mailboxID] = box
	}
	c.clock++
	box.used = c.clock
	c.mu.Unlock()

	box.mu.Lock()
	defer box.mu.Unlock()
	if !box.loaded || box.uidValidity != uv {
		es, err := s.entriesPacked(ctx, mailboxID, 0, 1<<32-1)
		if err != nil {
			box.loaded, box.entries = false, nil
			return err
		}
		box.entries = make([]cachedEntry, 0, len(es))
		for _, e := range es {
			box.entries = append(box.entries, cachedEntry{uid: e.UID, flags: e.Flags, modseq: e.ModSeq,
				date: e.InternalDate.UnixMilli(), size: e.Size, msgID: e.MessageID, keywords: e.Keywords})
		}
		box.uidValidity, box.loaded = uv, true
	} else if modseq != box.modseq {
		if err := s.refreshBox(ctx, mailboxID, box); err != nil {
			box.loaded, box.entries = false, nil
			return err
		}
	}
	box.modseq = modseq
	keep := c.resize(box)
	fn(box.entries)
	if !keep {
		box.loaded, box.entries = false, nil
	}
	return nil
}

// refreshBox applies to box the changes with a MODSEQ above box.modseq:
// new and changed entries, and expunges. Reading after the mailbox's row
// means that the entries may reflect later changes than box.modseq: the
// next refresh applies those again, which changes nothing.
func (s *Store) refreshBox(ctx context.Context, mailboxID int64, box *cachedBox) error {
	rows, err := s.rquery(ctx, `SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?`, mailboxID, box.modseq)
	if err != nil {
		return err
	}
	var gone []uint32
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			rows.Close()
			return err
		}
		gone = append(gone, uid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = s.rquery(ctx, `SELECT uid, flags, modseq, internal_date, size, message_id,
		(SELECT group_concat(keyword, ' ') FROM keywords k WHERE k.mailbox_id = e.mailbox_id AND k.uid = e.uid)
		FROM entries e WHERE mailbox_id = ? AND modseq > ?`, mailboxID, box.modseq)
	if err != nil {
		return err
	}
	var changed []cachedEntry
	for rows.Next() {
		var e cachedEntry
		var kws sql.NullString
		if err := rows.Scan(&e.uid, &e.flags, &e.modseq, &e.date, &e.size, &e.msgID, &kws); err != nil {
			rows.Close()
			return err
		}
		if kws.String != "" {
			e.keywords = strings.Split(kws.String, " ") // keywords are atoms: no spaces
			slices.Sort(e.keywords)
		}
		changed = append(changed, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	cmp := func(e cachedEntry, uid uint32) int { return int(int64(e.uid) - int64(uid)) }
	for _, uid := range gone {
		if i, ok := slices.BinarySearchFunc(box.entries, uid, cmp); ok {
			box.entries = slices.Delete(box.entries, i, i+1)
		}
	}
	for _, e := range changed {
		if n := len(box.entries); n == 0 || box.entries[n-1].uid < e.uid {
			box.entries = append(box.entries, e) // new mail: the usual case
			continue
		}
		i, ok := slices.BinarySearchFunc(box.entries, e.uid, cmp)
		if ok {
			box.entries[i] = e
		} else {
			box.entries = slices.Insert(box.entries, i, e)
		}
	}
	return nil
}

// resize counts box's entries and evicts the least recently used other
// mailboxes while the cache holds too many. It reports false if box is
// no longer kept (too large, evicted or dropped): its entries serve the
// current read only.
func (c *entryCache) resize(box *cachedBox) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if box.gone {
		return false
	}
	c.total += len(box.entries) - box.counted
	box.counted = len(box.entries)
	if box.counted > maxCachedEntries/2 {
		c.forget(box)
		return false
	}
	for c.total > maxCachedEntries {
		var victim *cachedBox
		for _, b := range c.boxes {
			if b != box && (victim == nil || b.used < victim.used) {
				victim = b
			}
		}
		if victim == nil {
			break
		}
		c.forget(victim)
	}
	return true
}

// forget removes box from the cache (under c.mu). A reader that holds it
// finishes with its entries, then lets them go.
func (c *entryCache) forget(box *cachedBox) {
	if box.gone {
		return
	}
	box.gone = true
	delete(c.boxes, box.id)
	c.total -= box.counted
	box.counted = 0
}

// has reports whether the cache holds mailboxID's entries (perhaps not up
// to date).
func (c *entryCache) has(mailboxID int64) bool {
	c.mu.Lock()
	box := c.boxes[mailboxID]
	c.mu.Unlock()
	if box == nil {
		return false
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	return box.loaded
}

// drop forgets a mailbox that no longer exists.
func (c *entryCache) drop(mailboxID int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if box := c.boxes[mailboxID]; box != nil {
		c.forget(box)
	}
}
