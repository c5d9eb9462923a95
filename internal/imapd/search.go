package imapd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 bodies for SEARCH
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/postern-mail/postern/internal/store"
)

const flagRecent imap.Flag = `\Recent`

// Search answers SEARCH and UID SEARCH with every RFC 9051 6.4.4 key, and
// ESEARCH/SEARCHRES return options (RFC 4731, RFC 5182): go-imap encodes
// the result; this saves it for "$".
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.selected()
	entries, err := s.srv.backend.EntriesByUID(s.ctx(), sel.mb.ID, sel.uids)
	if err != nil {
		return nil, s.storeError("search", err)
	}
	byUID := newEntriesByUID(entries)
	var data imap.SearchData
	var seqs imap.SeqSet
	var uids imap.UIDSet
	var saved []uint32
	// Header keys without body keys: the starts of the messages are read
	// in bulk, a chunk of the view at a time.
	hr, bulk := s.srv.backend.(headReader)
	bulk = bulk && needsHeader(criteria) && !needsBody(criteria)
	// Keys on the fields the head cache keeps are answered from it.
	cached := bulk && keptOnly(criteria)
	var spans []headSpan
	var kept []byte
	if cached {
		if spans, kept, err = s.srv.heads.heads(s.ctx(), hr, sel.mb.ID, sel.mb.UIDValidity, sel.uids); err != nil {
			return nil, s.storeError("search: reading headers", err)
		}
	}
	var heads map[uint32][]byte
	br := bufio.NewReader(nil)
	var cand candidate
	m := &cand
	j := 0
	for i, uid := range sel.uids {
		e := byUID.get(uid)
		if e == nil {
			continue
		}
		*m = candidate{s: s, seq: uint32(i) + 1, e: e, br: br}
		if cached {
			for j < len(spans) && spans[j].uid < uid {
				j++
			}
			if j < len(spans) && spans[j].uid == uid && spans[j].n != noHead {
				sp := spans[j]
				m.head, m.headOnly = kept[sp.off:sp.off+sp.n:sp.off+sp.n], true
			}
		} else if bulk {
			if i%headChunk == 0 {
				chunk := sel.uids[i:min(i+headChunk, len(sel.uids))]
				heads = make(map[uint32][]byte, len(chunk))
				if err := hr.EntryHeads(s.ctx(), sel.mb.ID, chunk, headMax, func(uid uint32, head []byte) error {
					heads[uid] = head
					return nil
				}); err != nil {
					return nil, s.storeError("search: reading headers", err)
				}
			}
			m.head = heads[uid]
		}
		ok, err := sel.match(m, criteria)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		saved = append(saved, uid)
		num := m.seq
		if kind == imapserver.NumKindUID {
			num = uid
			uids.AddNum(imap.UID(uid))
		} else {
			seqs.AddNum(m.seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		sel.searchRes = saved
	}
	return &data, nil
}

// headReader is implemented by backends that read the starts of many
// messages at once (internal/store/sqlite): SEARCH on header fields reads
// every message of the mailbox, and one store query each cost more than
// the matching.
type headReader interface {
	EntryHeads(ctx context.Context, mailboxID int64, uids []uint32, max int, fn func(uid uint32, head []byte) error) error
}

// Heads are read headChunk messages at a time, headMax bytes of each; a
// header that does not end within them is read with the whole message.
const (
	headChunk = 1000
	headMax   = 8 << 10
)

// needsHeader reports whether c has a key on header fields.
func needsHeader(c *imap.SearchCriteria) bool {
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if needsHeader(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsHeader(&c.Or[i][0]) || needsHeader(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// needsBody reports whether c has a BODY or TEXT key.
func needsBody(c *imap.SearchCriteria) bool {
	if len(c.Body) > 0 || len(c.Text) > 0 {
		return true
	}
	for i := range c.Not {
		if needsBody(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsBody(&c.Or[i][0]) || needsBody(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// headerEnd returns the length of the header section at the start of b,
// its empty line included, or -1 if it does not end within b.
func headerEnd(b []byte) int {
	for i := 0; i < len(b); {
		switch {
		case b[i] == '\n':
			return i + 1
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
	}
	return -1
}

// rawHeader returns the message's header section if it is at hand, nil
// if not.
func (m *candidate) rawHeader() []byte {
	if m.headOnly {
		return m.head
	}
	b := m.head
	if m.loaded {
		b = m.raw
	}
	if n := headerEnd(b); n >= 0 {
		return b[:n]
	}
	return nil
}

// mayContain is a quick test on a raw header section, so that most
// messages of a header search are not parsed: it reports false only when
// field key cannot contain value as matchHeader compares them, that is
// for an ASCII value without white space (a match cannot cross a folded
// line) in a non-address field of an ASCII header without encoded words
// (decoding changes nothing), when value is nowhere in the section, case
// aside.
func mayContain(header []byte, key, value string) bool {
	if header == nil || value == "" || isAddressField(key) {
		return true
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c >= 0x80 || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return true
		}
	}
	if bytes.Contains(header, []byte("=?")) {
		return true
	}
	for _, c := range header {
		if c >= 0x80 {
			return true
		}
	}
	return containsFoldASCII(header, value)
}

// containsFoldASCII reports whether b contains the ASCII string v, with
// ASCII letters compared case-insensitively.
func containsFoldASCII(b []byte, v string) bool {
	lo, up := lowerASCII(v[0]), v[0]
	if 'a' <= lo && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	for len(b) >= len(v) {
		last := b[:len(b)-len(v)+1] // where a match can start
		i := bytes.IndexByte(last, lo)
		if up != lo {
			if k := bytes.IndexByte(last, up); k >= 0 && (i < 0 || k < i) {
				i = k
			}
		}
		if i < 0 {
			return false
		}
		k := 1
		for k < len(v) && lowerASCII(b[i+k]) == lowerASCII(v[k]) {
			k++
		}
		if k == len(v) {
			return true
		}
		b = b[i+1:]
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isAddressField reports whether key names one of addressFields, without
// lowering it.
func isAddressField(key string) bool {
	for _, f := range addressFieldNames {
		if len(key) == len(f) && strings.EqualFold(key, f) {
			return true
		}
	}
	return false
}

var addressFieldNames = []string{"from", "to", "cc", "bcc", "sender", "reply-to"}

// candidate is a message being matched; its contents are read only if a
// key needs them.
type candidate struct {
	s    *session
	seq  uint32
	e    *store.Entry
	head []byte // the start of the message, if read in bulk
	// headOnly says that head is a header section of its own (lines kept
	// by the head cache).
	headOnly bool
	br       *bufio.Reader // shared by the candidates of a search
	raw      []byte
	loaded   bool
	header   *mail.Header
}

func (m *candidate) contents() ([]byte, error) {
	if !m.loaded {
		raw, err := m.s.readMessage(m.e.MailboxID, m.e.UID)
		if err != nil {
			return nil, m.s.storeError("search: reading message", err)
		}
		m.raw, m.loaded = raw, true
	}
	return m.raw, nil
}

func (m *candidate) hdr() (*mail.Header, error) {
	if m.header == nil {
		var raw []byte
		if n := headerEnd(m.head); n >= 0 {
			raw = m.head[:n]
		} else {
			var err error
			if raw, err = m.contents(); err != nil {
				return nil, err
			}
		}
		if m.br == nil {
			m.br = bufio.NewReader(nil)
		}
		m.br.Reset(bytes.NewReader(raw))
		h, err := textproto.ReadHeader(m.br)
		if err != nil && h.Len() == 0 {
			h = textproto.Header{}
		}
		m.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return m.header, nil
}

func (sel *selected) match(m *candidate, c *imap.SearchCriteria) (bool, error) {
	n := uint32(len(sel.uids))
	for _, set := range c.SeqNum {
		if !containsSeq(set, m.seq, n) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			if !containsUID(sel.searchRes, m.e.UID) {
				return false, nil
			}
			continue
		}
		var last uint32
		if n > 0 {
			last = sel.uids[n-1]
		}
		if !containsUIDSet(set, m.e.UID, last) {
			return false, nil
		}
	}
	if !matchDate(m.e.InternalDate, c.Since, c.Before) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !sel.hasFlag(m.e, f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if sel.hasFlag(m.e, f) {
			return false, nil
		}
	}
	if c.Larger != 0 && m.e.Size <= c.Larger {
		return false, nil
	}
	if c.Smaller != 0 && m.e.Size >= c.Smaller {
		return false, nil
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h, err := m.hdr()
		if err != nil {
			return false, err
		}
		t, err := h.Date()
		if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
			return false, nil
		}
	}
	for _, hf := range c.Header {
		if m.header == nil && !mayContain(m.rawHeader(), hf.Key, hf.Value) {
			return false, nil
		}
		h, err := m.hdr()
		if err != nil {
			return false, err
		}
		if !matchHeader(h, hf.Key, hf.Value) {
			return false, nil
		}
	}
	for _, text := range c.Body {
		raw, err := m.contents()
		if err != nil {
			return false, err
		}
		if !matchBody(raw, text, false) {
			return false, nil
		}
	}
	for _, text := range c.Text {
		raw, err := m.contents()
		if err != nil {
			return false, err
		}
		if !matchBody(raw, text, true) {
			return false, nil
		}
	}
	for i := range c.Not {
		ok, err := sel.match(m, &c.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		ok, err := sel.match(m, &c.Or[i][0])
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = sel.match(m, &c.Or[i][1]); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// bounds is a sequence or UID range as lo <= hi, with 0 (a "*") taken as
// star, the largest number in use (RFC 9051 9: "*" and the order of a
// range's ends).
func bounds(start, stop, star uint32) (lo, hi uint32) {
	if start == 0 {
		start = star
	}
	if stop == 0 {
		stop = star
	}
	return min(start, stop), max(start, stop)
}

func containsSeq(set imap.SeqSet, seq, n uint32) bool {
	for _, r := range set {
		lo, hi := bounds(r.Start, r.Stop, n)
		if seq >= lo && seq <= hi {
			return true
		}
	}
	return false
}

func containsUIDSet(set imap.UIDSet, uid, last uint32) bool {
	for _, r := range set {
		lo, hi := bounds(uint32(r.Start), uint32(r.Stop), last)
		if uid >= lo && uid <= hi {
			return true
		}
	}
	return false
}

func containsUID(list []uint32, uid uint32) bool {
	for _, u := range list {
		if u == uid {
			return true
		}
	}
	return false
}

func (sel *selected) hasFlag(e *store.Entry, f imap.Flag) bool {
	switch strings.ToLower(string(f)) {
	case `\seen`:
		return e.Flags&store.FlagSeen != 0
	case `\answered`:
		return e.Flags&store.FlagAnswered != 0
	case `\flagged`:
		return e.Flags&store.FlagFlagged != 0
	case `\deleted`:
		return e.Flags&store.FlagDeleted != 0
	case `\draft`:
		return e.Flags&store.FlagDraft != 0
	case `\recent`:
		return sel.isRecent(e.UID)
	}
	for _, k := range e.Keywords {
		if strings.EqualFold(k, string(f)) {
			return true
		}
	}
	return false
}

// matchDate compares dates only, ignoring time and zone (RFC 9051 6.4.4).
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

var addressFields = map[string]bool{"from": true, "to": true, "cc": true, "bcc": true, "sender": true, "reply-to": true}

// matchHeader is a case-insensitive substring match on the decoded field;
// address fields are matched on their parsed addresses, so that comments
// and quoting do not count (as Dovecot does). An empty value matches any
// message that has the field.
func matchHeader(h *mail.Header, key, value string) bool {
	key = strings.ToLower(key)
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	for fields.Next() {
		if addressFields[key] {
			// Our own parse: groups, comments and routes handled as in ENVELOPE.
			for _, a := range parseAddressList(unfold(fields.Value())) {
				text := a.Name + " " + a.Mailbox // a group's name
				if a.Host != "" {
					text = a.Name + " <" + a.Mailbox + "@" + a.Host + ">"
				}
				if strings.Contains(strings.ToLower(text), value) {
					return true
				}
			}
			continue
		}
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), value) {
			return true
		}
	}
	return false
}

// matchBody looks for text in the decoded text parts (and, for TEXT, the
// headers), case-insensitively.
func matchBody(raw []byte, text string, withHeader bool) bool {
	if text == "" {
		return true
	}
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		return bytes.Contains(bytes.ToLower(raw), bytes.ToLower([]byte(text)))
	}
	_ = err // unknown charsets or encodings: search what could be read
	return matchEntity(e, strings.ToLower(text), withHeader)
}

func matchEntity(e *gomessage.Entity, text string, withHeader bool) bool {
	if withHeader {
		f := e.Header.Fields()
		for f.Next() {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if strings.Contains(strings.ToLower(f.Key()+": "+v), text) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(p, text, withHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	return strings.Contains(strings.ToLower(string(b)), text)
}
