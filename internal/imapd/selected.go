package imapd

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/store"
)

// selected is a session's view of its selected mailbox. uids is what the
// client believes the mailbox holds: sequence number i+1 is uids[i]. It
// changes only when the session tells the client (EXISTS, EXPUNGE), so
// sequence numbers stay consistent however other sessions change the
// mailbox meanwhile (RFC 9051 7.5.1, 5.5).
type selected struct {
	s        *session
	mb       store.Mailbox
	readOnly bool
	sub      *store.Subscription

	uids []uint32
	// \Recent to this session (RFC 3501 2.3.2): the UIDs above recentAfter
	// that were in the mailbox at SELECT, and those in recent that arrived
	// since and that this session claimed first.
	recentAfter uint32
	initialLast uint32 // highest UID at SELECT
	recent      map[uint32]struct{}
	keywords    []string       // keywords announced in FLAGS
	queue       []store.Change // taken from sub, not yet told (expunges held back)
	searchRes   []uint32       // SEARCH RETURN (SAVE) result (RFC 5182)

	// Keywords seen in a FETCH or STORE answer before a FLAGS response
	// announced them are left out there; the next poll announces them and
	// sends those messages' flags again (RFC 9051 7.3.5: a client learns
	// keywords from FLAGS).
	unannounced []string
	resend      []uint32

	flagBuf []imap.Flag // imapFlags' result, reused
}

func (sel *selected) close() { sel.sub.Close() }

// systemFlags are the flags every mailbox accepts.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// Select opens a mailbox read-write or, for EXAMINE, read-only (RFC 9051 6.3.2, 6.3.3).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.setSelected(nil)
	mb, err := s.srv.backend.MailboxByName(s.ctx(), s.user.ID, name)
	if err != nil {
		return nil, s.storeError("select", err)
	}
	// Subscribe before reading, so that no change falls between the two;
	// changes already reflected in what is read are ignored when applied.
	sub := s.srv.backend.Changes().Subscribe(mb.ID)
	uids, err := s.srv.backend.UIDs(s.ctx(), mb.ID)
	if err != nil {
		sub.Close()
		return nil, s.storeError("select", err)
	}
	kws, err := s.srv.backend.MailboxKeywords(s.ctx(), mb.ID)
	if err != nil {
		sub.Close()
		return nil, s.storeError("select", err)
	}
	firstUnseen, err := s.srv.backend.FirstUnseen(s.ctx(), mb.ID)
	if err != nil {
		sub.Close()
		return nil, s.storeError("select", err)
	}
	sel := &selected{s: s, mb: mb, readOnly: options.ReadOnly, sub: sub, uids: uids, keywords: kws}
	if len(uids) > 0 {
		// EXAMINE shows \Recent without taking it away from others.
		upto := uids[len(uids)-1]
		sel.initialLast = upto
		if sel.readOnly {
			upto = 0
		}
		sel.recentAfter = s.srv.claimRecent(mb.ID, upto)
	}
	s.setSelected(sel)
	data := &imap.SelectData{
		Flags:       sel.mailboxFlags(),
		NumMessages: uint32(len(uids)),
		NumRecent:   sel.numRecent(),
		UIDNext:     imap.UID(mb.UIDNext),
		UIDValidity: mb.UIDValidity,
	}
	if firstUnseen != 0 {
		data.FirstUnseenSeqNum = sel.seqOf(firstUnseen)
	}
	if sel.readOnly {
		data.PermanentFlags = []imap.Flag{}
	} else {
		data.PermanentFlags = append(sel.mailboxFlags(), imap.FlagWildcard)
	}
	return data, nil
}

// Unselect leaves the selected state (UNSELECT, CLOSE after its expunge).
func (s *session) Unselect() error {
	s.setSelected(nil)
	return nil
}

func (sel *selected) mailboxFlags() []imap.Flag {
	flags := slices.Clone(systemFlags)
	for _, k := range sel.keywords {
		flags = append(flags, imap.Flag(k))
	}
	return flags
}

// isRecent reports whether uid is \Recent in this session.
func (sel *selected) isRecent(uid uint32) bool {
	if _, ok := sel.recent[uid]; ok {
		return true
	}
	return uid > sel.recentAfter && uid <= sel.initialLast
}

// numRecent counts the \Recent messages in the view.
func (sel *selected) numRecent() uint32 {
	i, _ := slices.BinarySearch(sel.uids, sel.recentAfter+1)
	j, found := slices.BinarySearch(sel.uids, sel.initialLast)
	if found {
		j++
	}
	n := 0
	if j > i {
		n = j - i
	}
	return uint32(n + len(sel.recent))
}

// seqOf returns the sequence number of uid in the client's view, 0 if absent.
func (sel *selected) seqOf(uid uint32) uint32 {
	i, ok := slices.BinarySearch(sel.uids, uid)
	if !ok {
		return 0
	}
	return uint32(i) + 1
}

// remove drops uid from the view and returns its former sequence number.
func (sel *selected) remove(uid uint32) uint32 {
	i, ok := slices.BinarySearch(sel.uids, uid)
	if !ok {
		return 0
	}
	sel.uids = slices.Delete(sel.uids, i, i+1)
	delete(sel.recent, uid)
	return uint32(i) + 1
}

// imapFlags converts stored flags for the client. The result is only good
// until the next call (it reuses sel.flagBuf): write it at once.
func (sel *selected) imapFlags(uid uint32, f store.Flags, kws []string) []imap.Flag {
	out := sel.flagBuf[:0]
	for i, sf := range []store.Flags{store.FlagSeen, store.FlagAnswered, store.FlagFlagged, store.FlagDeleted, store.FlagDraft} {
		if f&sf != 0 {
			out = append(out, systemFlags[i])
		}
	}
	if sel.isRecent(uid) && !sel.s.conn.CapEnabled(imap.CapIMAP4rev2) {
		out = append(out, flagRecent)
	}
	for _, k := range kws {
		if !slices.ContainsFunc(sel.keywords, func(o string) bool { return strings.EqualFold(o, k) }) {
			if !slices.Contains(sel.unannounced, k) {
				sel.unannounced = append(sel.unannounced, k)
			}
			if !slices.Contains(sel.resend, uid) {
				sel.resend = append(sel.resend, uid)
			}
			continue
		}
		out = append(out, imap.Flag(k))
	}
	sel.flagBuf = out[:0]
	return out
}

// preannounce sends FLAGS for keywords of entries the client has not
// been told of, before a FETCH or STORE answer shows them.
func (sel *selected) preannounce(entries []store.Entry) error {
	var kws []string
	for _, e := range entries {
		for _, k := range e.Keywords {
			if !slices.ContainsFunc(sel.keywords, func(o string) bool { return strings.EqualFold(o, k) }) {
				kws = append(kws, k)
			}
		}
	}
	if len(kws) == 0 {
		return nil
	}
	w := sel.s.updateWriter()
	if w == nil {
		return nil // announced at the next poll instead
	}
	return sel.noteKeywords(w, kws)
}

// announce sends FLAGS for keywords left out of earlier answers, then the
// full flags of the messages concerned.
func (sel *selected) announce(w *imapserver.UpdateWriter) error {
	if len(sel.unannounced) == 0 {
		return nil
	}
	kws, uids := sel.unannounced, sel.resend
	sel.unannounced, sel.resend = nil, nil
	if err := sel.noteKeywords(w, kws); err != nil {
		return err
	}
	entries, err := sel.s.srv.backend.EntriesByUID(sel.s.ctx(), sel.mb.ID, uids)
	if err != nil {
		return sel.s.storeError("flags", err)
	}
	for _, e := range entries {
		if seq := sel.seqOf(e.UID); seq != 0 {
			if err := w.WriteMessageFlags(seq, imap.UID(e.UID), sel.imapFlags(e.UID, e.Flags, e.Keywords)); err != nil {
				return err
			}
		}
	}
	return nil
}

// noteKeywords announces keywords new to the client with a FLAGS response
// (RFC 9051 7.3.5).
func (sel *selected) noteKeywords(w *imapserver.UpdateWriter, kws []string) error {
	added := false
	for _, k := range kws {
		if !slices.ContainsFunc(sel.keywords, func(o string) bool { return strings.EqualFold(o, k) }) {
			sel.keywords = append(sel.keywords, k)
			added = true
		}
	}
	if !added || w == nil {
		return nil
	}
	slices.Sort(sel.keywords)
	return w.WriteMailboxFlags(sel.mailboxFlags())
}

// Poll tells the client what changed since its last command. Expunges wait
// while they are not allowed (during FETCH, STORE, SEARCH: RFC 9051 7.5.1).
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.selected()
	if sel == nil {
		return nil
	}
	return sel.poll(w, allowExpunge)
}

func (sel *selected) poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if err := sel.announce(w); err != nil {
		return err
	}
	sel.queue = append(sel.queue, sel.sub.Take()...)
	if len(sel.queue) == 0 {
		return nil
	}
	queue := sel.queue
	sel.queue = nil
	grew := false
	flushExists := func() error {
		if !grew {
			return nil
		}
		grew = false
		if err := w.WriteNumMessages(uint32(len(sel.uids))); err != nil {
			return err
		}
		return w.WriteNumRecent(sel.numRecent())
	}
	for _, c := range queue {
		switch c.Kind {
		case store.ChangeNew:
			if n := len(sel.uids); n > 0 && c.UID <= sel.uids[n-1] {
				continue // already in the view
			}
			if err := sel.noteKeywords(w, c.Keywords); err != nil {
				return err
			}
			sel.uids = append(sel.uids, c.UID)
			if !sel.readOnly && sel.s.srv.claimRecent(sel.mb.ID, c.UID) < c.UID {
				if sel.recent == nil {
					sel.recent = map[uint32]struct{}{}
				}
				sel.recent[c.UID] = struct{}{}
			}
			grew = true
		case store.ChangeFlags:
			seq := sel.seqOf(c.UID)
			if seq == 0 {
				continue
			}
			if c.Origin == sel.s {
				// The session answered its own STORE; only a keyword new
				// to the mailbox still needs a FLAGS response.
				if err := sel.noteKeywords(w, c.Keywords); err != nil {
					return err
				}
				continue
			}
			if err := flushExists(); err != nil {
				return err
			}
			if err := sel.noteKeywords(w, c.Keywords); err != nil {
				return err
			}
			if err := w.WriteMessageFlags(seq, imap.UID(c.UID), sel.imapFlags(c.UID, c.Flags, c.Keywords)); err != nil {
				return err
			}
		case store.ChangeExpunge:
			if !allowExpunge {
				sel.queue = append(sel.queue, c)
				continue
			}
			if err := flushExists(); err != nil {
				return err
			}
			if seq := sel.remove(c.UID); seq != 0 {
				if err := w.WriteExpunge(seq); err != nil {
					return err
				}
			}
		case store.ChangeRemoved:
			if err := flushExists(); err != nil {
				return err
			}
			return sel.s.conn.Bye("Selected mailbox was deleted")
		}
	}
	return flushExists()
}

// Idle sends changes as they are committed until the client ends IDLE
// (RFC 2177, RFC 9051 6.3.13). The broadcaster wakes it: no polling.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	sel := s.selected()
	done := make(chan struct{})
	s.mu.Lock()
	s.idleDone = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.idleDone = nil
		s.mu.Unlock()
		close(done)
	}()
	if sel == nil {
		<-stop
		return nil
	}
	if err := sel.poll(w, true); err != nil {
		return err
	}
	for {
		select {
		case <-sel.sub.C():
			if err := sel.poll(w, true); err != nil {
				return err
			}
		case <-stop:
			return nil
		}
	}
}

// msgRef is a message of the view.
type msgRef struct{ seq, uid uint32 }

// resolve turns a sequence or UID set into the view's messages, in
// ascending order. "*" is the last message (or the highest UID), "$" the
// saved search result (RFC 5182). For sequence sets, strict refuses
// numbers beyond the view (RFC 9051 9: seq-number).
func (sel *selected) resolve(numSet imap.NumSet, strict bool) ([]msgRef, error) {
	n := uint32(len(sel.uids))
	var refs []msgRef
	if imap.IsSearchRes(numSet) {
		for _, uid := range sel.searchRes {
			if seq := sel.seqOf(uid); seq != 0 {
				refs = append(refs, msgRef{seq, uid})
			}
		}
		return refs, nil
	}
	// Ranges of indexes into uids, merged, so that 1:* over a large
	// mailbox costs no per-message bookkeeping.
	type span struct{ lo, hi int } // inclusive indexes into sel.uids
	var spans []span
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			lo, hi := bounds(r.Start, r.Stop, n)
			if strict && (lo == 0 || hi > n) {
				return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Invalid message sequence number"}
			}
			if hi > n {
				hi = n
			}
			if lo < 1 {
				lo = 1
			}
			if lo <= hi {
				spans = append(spans, span{int(lo) - 1, int(hi) - 1})
			}
		}
	case imap.UIDSet:
		if n == 0 {
			return nil, nil
		}
		last := sel.uids[n-1]
		for _, r := range set {
			lo, hi := bounds(uint32(r.Start), uint32(r.Stop), last)
			i, _ := slices.BinarySearch(sel.uids, lo)
			j, found := slices.BinarySearch(sel.uids, hi)
			if !found {
				j--
			}
			if i <= j {
				spans = append(spans, span{i, j})
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
	next := 0 // first index not yet taken
	for _, sp := range spans {
		for i := max(sp.lo, next); i <= sp.hi; i++ {
			refs = append(refs, msgRef{uint32(i) + 1, sel.uids[i]})
		}
		next = max(next, sp.hi+1)
	}
	return refs, nil
}

func refUIDs(refs []msgRef) []uint32 {
	out := make([]uint32, len(refs))
	for i, r := range refs {
		out[i] = r.uid
	}
	return out
}

// entriesByUID finds entries by UID without building a map (FETCH 1:*
// and SEARCH over a large mailbox): the backend's entries, sorted here
// if they came in another order, searched by bisection unless the UID
// asked for is the one after the last found, as it is when the caller
// goes through the mailbox in order.
type entriesByUID struct {
	es   []store.Entry
	next int // the index after the last entry found
}

func newEntriesByUID(entries []store.Entry) *entriesByUID {
	cmp := func(a, b store.Entry) int { return cmpUID(a.UID, b.UID) }
	if !slices.IsSortedFunc(entries, cmp) {
		slices.SortFunc(entries, cmp)
	}
	return &entriesByUID{es: entries}
}

// get returns the entry of uid, nil if there is none.
func (b *entriesByUID) get(uid uint32) *store.Entry {
	es := b.es
	i := b.next
	if i >= len(es) || es[i].UID != uid {
		// Not the next one: an expunged message skipped, or another order.
		var ok bool
		if i, ok = slices.BinarySearchFunc(es, uid, func(e store.Entry, u uint32) int { return cmpUID(e.UID, u) }); !ok {
			return nil
		}
	}
	b.next = i + 1
	return &es[i]
}

func cmpUID(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
