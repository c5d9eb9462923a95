package imapd

import (
	"bufio"
	"bytes"
	"context"
	nettextproto "net/textproto"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

// keptFields are the header fields whose lines the head cache keeps, by
// their canonical names: those clients search (SUBJECT, FROM, TO, CC, BCC
// and HEADER on them, threading by Message-ID) and Date for SENTSINCE and
// SENTBEFORE. Dovecot's dovecot.index.cache keeps the same kind of
// selection.
var keptFields = map[string]bool{
	"Subject": true, "From": true, "To": true, "Cc": true, "Bcc": true, "Sender": true,
	"Reply-To": true, "Message-Id": true, "In-Reply-To": true, "Date": true,
}

// maxKeptBytes bounds the kept lines of one message; a message with more
// (thousands of recipients) is read whole when searched.
const maxKeptBytes = 4 << 10

// maxHeadCacheBytes bounds the head cache in all; a mailbox whose kept
// lines take more than half of it is read from the store each time. A
// variable for tests.
var maxHeadCacheBytes = 128 << 20

// headCache keeps, for recently searched mailboxes, the lines of
// keptFields of each message's header, so that a SEARCH on those fields
// reads them from memory rather than every message from the store. A
// message's contents never change and a UID is never reused within a
// UIDVALIDITY, so what is kept stays right: a search adds the messages it
// lacks (new mail), and expunged ones are dropped when they make up too
// much of a mailbox's share.
type headCache struct {
	mu    sync.Mutex
	boxes map[int64]*boxHeads
	total int    // bytes held, at most maxHeadCacheBytes
	clock uint64 // advanced at each use, for eviction
}

type boxHeads struct {
	id          int64
	mu          sync.Mutex // held while the box is brought up to date
	uidValidity uint32
	spans       []headSpan // by UID; never changed in place once handed out
	data        []byte     // the kept lines; only appended to

	// Under headCache.mu:
	used    uint64
	counted int
	gone    bool
}

// headSpan places a message's kept lines in boxHeads.data: n bytes at
// off, a header section of its own (it ends with an empty line); n is
// noHead for a message whose lines are not kept (a header longer than
// headMax or kept lines longer than maxKeptBytes).
type headSpan struct {
	uid, off, n uint32
}

const noHead = ^uint32(0)

const headSpanSize = 12

// keptOnly reports whether every header key of c is among keptFields, so
// that the kept lines answer it.
func keptOnly(c *imap.SearchCriteria) bool {
	for _, hf := range c.Header {
		if !keptFields[nettextproto.CanonicalMIMEHeaderKey(hf.Key)] {
			return false
		}
	}
	for i := range c.Not {
		if !keptOnly(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !keptOnly(&c.Or[i][0]) || !keptOnly(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

// heads returns the kept lines of the messages among uids (sorted
// ascending) that are in the mailbox, reading from hr those not yet kept:
// spans by UID, pointing into data. Neither is changed afterwards.
func (c *headCache) heads(ctx context.Context, hr headReader, mailboxID int64, uidValidity uint32, uids []uint32) ([]headSpan, []byte, error) {
	c.mu.Lock()
	if c.boxes == nil {
		c.boxes = map[int64]*boxHeads{}
	}
	box := c.boxes[mailboxID]
	if box == nil {
		box = &boxHeads{id: mailboxID}
		c.boxes[mailboxID] = box
	}
	c.clock++
	box.used = c.clock
	c.mu.Unlock()

	box.mu.Lock()
	defer box.mu.Unlock()
	if box.uidValidity != uidValidity {
		box.uidValidity, box.spans, box.data = uidValidity, nil, nil
	}
	var missing []uint32
	j := 0
	for _, uid := range uids {
		for j < len(box.spans) && box.spans[j].uid < uid {
			j++
		}
		if j == len(box.spans) || box.spans[j].uid != uid {
			missing = append(missing, uid)
		}
	}
	if len(missing) > 0 {
		var added []headSpan
		br := bufio.NewReader(nil)
		data := box.data
		err := hr.EntryHeads(ctx, mailboxID, missing, headMax, func(uid uint32, head []byte) error {
			off := len(data)
			ok := false
			if off < 1<<31 { // offsets are 32 bits; a box this large is not kept anyway
				data, ok = appendKept(data, head, br)
			}
			n := uint32(len(data) - off)
			if !ok {
				n = noHead
			}
			added = append(added, headSpan{uid: uid, off: uint32(off), n: n})
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		box.data = data
		if n := len(box.spans); n == 0 || len(added) == 0 || box.spans[n-1].uid < added[0].uid {
			box.spans = append(box.spans, added...) // new mail: the usual case
		} else {
			merged := make([]headSpan, 0, len(box.spans)+len(added))
			merged = append(merged, box.spans...)
			merged = append(merged, added...)
			slices.SortFunc(merged, func(a, b headSpan) int { return cmpUID(a.uid, b.uid) })
			box.spans = merged
		}
	}
	if len(box.spans) > 2*len(uids)+1024 {
		box.compact(uids)
	}
	spans, data := box.spans, box.data
	if !c.resize(box) {
		box.spans, box.data = nil, nil
	}
	return spans, data, nil
}

// compact keeps only the messages among uids (sorted ascending): the
// others were expunged, or are out of some session's view.
func (box *boxHeads) compact(uids []uint32) {
	var spans []headSpan
	var data []byte
	j := 0
	for _, sp := range box.spans {
		for j < len(uids) && uids[j] < sp.uid {
			j++
		}
		if j == len(uids) || uids[j] != sp.uid {
			continue
		}
		if sp.n != noHead {
			off := len(data)
			data = append(data, box.data[sp.off:sp.off+sp.n]...)
			sp.off = uint32(off)
		}
		spans = append(spans, sp)
	}
	box.spans, box.data = spans, data
}

// appendKept appends to dst the lines of keptFields in the header at the
// start of head, as a header section of their own, parsed as
// candidate.hdr parses the whole header, so that the fields read back are
// the same. It reports false, appending nothing, if the header does not
// end within head or its kept lines are longer than maxKeptBytes.
func appendKept(dst, head []byte, br *bufio.Reader) ([]byte, bool) {
	n := headerEnd(head)
	if n < 0 {
		return dst, false
	}
	if out, ok := appendKeptRaw(dst, head[:n]); ok {
		return out, len(out)-len(dst) <= maxKeptBytes
	}
	start := len(dst)
	br.Reset(bytes.NewReader(head[:n]))
	h, _ := textproto.ReadHeader(br) // on an error, the fields before it, as in hdr
	fields := h.Fields()
	for fields.Next() {
		if !keptFields[fields.Key()] {
			continue
		}
		raw, err := fields.Raw()
		if err != nil {
			return dst[:start], false
		}
		dst = append(dst, raw...)
	}
	dst = append(dst, '\r', '\n')
	if len(dst)-start > maxKeptBytes {
		return dst[:start], false
	}
	return dst, true
}

// appendKeptRaw is appendKept's quick way for a well-formed header
// section hdr: it copies the kept fields' lines as they are, without
// parsing the header. It reports false, appending nothing, for a header
// textproto.ReadHeader might read otherwise (a first line that starts with
// white space, a line without a colon, a key with other than printable
// ASCII, a CR not before LF): appendKept parses those.
func appendKeptRaw(dst, hdr []byte) ([]byte, bool) {
	if len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') {
		return dst, false
	}
	for i := 0; ; {
		k := bytes.IndexByte(hdr[i:], '\r')
		if k < 0 {
			break
		}
		if i += k + 1; i == len(hdr) || hdr[i] != '\n' {
			return dst, false
		}
	}
	start := len(dst)
	for i := 0; i < len(hdr); {
		if hdr[i] == '\n' || hdr[i] == '\r' {
			break // the empty line that ends the section (headerEnd)
		}
		// A field: its first line and the lines that continue it.
		j := i
		for {
			k := bytes.IndexByte(hdr[j:], '\n')
			if k < 0 {
				return dst[:start], false
			}
			j += k + 1
			if j == len(hdr) || (hdr[j] != ' ' && hdr[j] != '\t') {
				break
			}
		}
		field := hdr[i:j]
		i = j
		line := field[:bytes.IndexByte(field, '\n')]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return dst[:start], false
		}
		key := bytes.TrimRight(bytes.TrimLeft(line[:colon], " \t"), " \t")
		if len(key) == 0 {
			return dst[:start], false
		}
		for _, c := range key {
			if c < 33 || c > 126 {
				return dst[:start], false
			}
		}
		if isKeptField(key) {
			dst = append(dst, field...)
		}
	}
	return append(dst, '\r', '\n'), true
}

// isKeptField reports whether key, a field name as written, is one of
// keptFields: for a name of printable ASCII, the canonical form that
// textproto gives it is one of them exactly when it matches one ignoring
// case, since theirs are letters and hyphens.
func isKeptField(key []byte) bool {
	for _, f := range keptFieldNames {
		if len(key) == len(f) && bytes.EqualFold(key, []byte(f)) {
			return true
		}
	}
	return false
}

var keptFieldNames = func() []string {
	var names []string
	for f := range keptFields {
		names = append(names, f)
	}
	return names
}()

// resize counts box's bytes and evicts the least recently used other
// mailboxes while the cache holds too much. It reports false if box is not
// kept (too large, or evicted meanwhile).
func (c *headCache) resize(box *boxHeads) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if box.gone {
		return false
	}
	size := cap(box.data) + headSpanSize*cap(box.spans)
	c.total += size - box.counted
	box.counted = size
	if size > maxHeadCacheBytes/2 {
		c.forget(box)
		return false
	}
	for c.total > maxHeadCacheBytes {
		var victim *boxHeads
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

// forget removes box from the cache (under c.mu).
func (c *headCache) forget(box *boxHeads) {
	if box.gone {
		return
	}
	box.gone = true
	delete(c.boxes, box.id)
	c.total -= box.counted
	box.counted = 0
}
