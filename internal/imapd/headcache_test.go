package imapd

import (
	"bufio"
	"strings"
	"testing"
)

// TestSearchHeadCache checks SEARCH on the header fields the head cache
// keeps: folded and encoded fields, a header longer than what is read in
// bulk and kept lines longer than maxKeptBytes (both read whole), date
// keys, and that new mail and expunges are seen by the next search; then
// the same with a cache too small to keep the mailbox.
func TestSearchHeadCache(t *testing.T) {
	t.Run("kept", func(t *testing.T) { testSearchHeadCache(t, true) })
	t.Run("too large", func(t *testing.T) {
		old := maxHeadCacheBytes
		maxHeadCacheBytes = 64
		t.Cleanup(func() { maxHeadCacheBytes = old })
		testSearchHeadCache(t, false)
	})
}

func testSearchHeadCache(t *testing.T, kept bool) {
	e := newEnv(t)
	e.deliver(t, "Subject: long\r\n folded\r\n\r\nbody\r\n")                                                                                 // 1
	e.deliver(t, "Subject: other\r\nX-Pad: "+strings.Repeat("p", 3*headMax)+"\r\nSubject: late needle\r\n\r\nbody\r\n")                      // 2
	e.deliver(t, "To: "+strings.Repeat("someone@example.org, ", maxKeptBytes/20)+"x@example.org\r\nSubject: needle to many\r\n\r\nbody\r\n") // 3
	e.deliver(t, "Subject: =?utf-8?q?long?=\r\n\tfolded, encoded\r\n\r\nbody\r\n")                                                           // 4
	e.deliver(t, "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nSubject: dated\r\nX-Other: needle\r\n\r\nbody\r\n")                                // 5
	e.deliver(t, "From: \"Long\r\n Folded\" <fold@example.org>\r\nSubject: a\r\n  long\r\n  folded one\r\n\r\nbody\r\n")                     // 6
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	check := func(search, want string) {
		t.Helper()
		u := r.ok("%s", search)
		if !has(u, want) || !strings.HasSuffix(strings.TrimSpace(strings.Join(u, "\n")), want) {
			t.Errorf("%s: got %q, want %q", search, u, want)
		}
	}
	// RFC 5322 2.2.3: a folded field is matched unfolded.
	check(`UID SEARCH HEADER Subject "long folded"`, "* SEARCH 1 4 6")
	check(`UID SEARCH SUBJECT "LONG FOLDED"`, "* SEARCH 1 4 6")
	check(`UID SEARCH HEADER From "long folded"`, "* SEARCH 6")
	check(`UID SEARCH HEADER Subject needle`, "* SEARCH 2 3")
	check(`UID SEARCH HEADER Subject NEEDLE`, "* SEARCH 2 3")
	check(`UID SEARCH HEADER X-Other needle`, "* SEARCH 5")
	check(`UID SEARCH HEADER To x@example.org`, "* SEARCH 3")
	check(`UID SEARCH SENTON 2-Nov-2026`, "* SEARCH 5")
	check(`UID SEARCH OR SUBJECT dated NOT HEADER Subject o`, "* SEARCH 5")
	check(`UID SEARCH HEADER Message-ID x`, "* SEARCH")
	check(`UID SEARCH HEADER Subject ""`, "* SEARCH 1 2 3 4 5 6")

	e.deliver(t, "Subject: new needle\r\n\r\nbody\r\n") // 7
	r.ok("NOOP")
	check(`UID SEARCH HEADER Subject needle`, "* SEARCH 2 3 7")
	r.ok("STORE 3 +FLAGS (\\Deleted)")
	r.ok("EXPUNGE")
	check(`UID SEARCH HEADER Subject needle`, "* SEARCH 2 7")

	e.srv.heads.mu.Lock()
	n := len(e.srv.heads.boxes)
	e.srv.heads.mu.Unlock()
	if kept && n != 1 || !kept && n != 0 {
		t.Errorf("head cache holds %d mailboxes", n)
	}
}

// TestKeptFieldsSame checks that the kept lines of a header read back as
// the same fields as the whole header, for every kept field, however odd
// the header: a malformed line part way (fields after it are not read),
// a first line that starts with white space, LF line endings, keys in
// other cases or with white space before the colon, repeated fields; and
// which headers are copied without parsing.
func TestKeptFieldsSame(t *testing.T) {
	br := bufio.NewReader(nil)
	for _, c := range []struct {
		head string
		raw  bool // copied without parsing (appendKeptRaw)
	}{
		{"Subject: a\r\nX-Other: b\r\nsubject: c\r\nTO: d@e\r\n\r\nbody", true},
		{"Subject: a\r\nnot a field\r\nFrom: x@y\r\n\r\n", false},
		{" Subject: a\r\nFrom: x@y\r\n\r\n", false},
		{"Subject: lf\n folded\nDate: Mon, 2 Nov 2026 10:00:00 +0000\n\nbody", true},
		{"Subject : spaced\r\nMessage-ID: <a@b>\r\nIn-Reply-To: <c@d>\r\nReply-To: r@s\r\n\r\n", true},
		{"Subject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?_au_lait?=\r\nCc: \"A, B\" <a@b>,\r\n\tc@d\r\n\r\n", true},
		{"\r\nno header", true},
		{"Subject: a\r\nX Bad: b\r\nFrom: x@y\r\n\r\n", false},
		{"Subject: lone\rCR\r\nFrom: x@y\r\n\r\n", false},
		{"From:x@y\r\n  \r\nsUbJeCt:\tlong\r\n\t\tline\r\n\r\n", true},
		{"X-Subject: no\r\nSubjects: no\r\nMessage-Id: <m@n>\r\n\r\n", true},
	} {
		head := c.head
		if _, raw := appendKeptRaw(nil, []byte(head[:headerEnd([]byte(head))])); raw != c.raw {
			t.Errorf("%q: copied without parsing %v, want %v", head, raw, c.raw)
		}
		kept, ok := appendKept(nil, []byte(head), br)
		if !ok {
			t.Errorf("%q: not kept", head)
			continue
		}
		whole := &candidate{head: []byte(head), br: br, loaded: true, raw: []byte(head)}
		part := &candidate{head: kept, br: br, headOnly: true}
		hw, _ := whole.hdr()
		hp, _ := part.hdr()
		for key := range keptFields {
			fw, fp := hw.FieldsByKey(key), hp.FieldsByKey(key)
			for fw.Next() {
				if !fp.Next() || fw.Value() != fp.Value() {
					t.Errorf("%q: field %s differs in the kept lines %q", head, key, kept)
				}
			}
			if fp.Next() {
				t.Errorf("%q: field %s more often in the kept lines %q", head, key, kept)
			}
		}
	}
}
