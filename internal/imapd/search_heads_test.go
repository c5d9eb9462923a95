package imapd

import (
	"strings"
	"testing"
)

// TestSearchHeaderBulk checks SEARCH on header fields, whose message
// starts are read in bulk: a field in the per-recipient prefix, one at the
// end of a header longer than what is read in bulk, messages without a
// body or without a header, expunged messages, folded and encoded fields
// and address fields (which the quick test on raw headers must not miss),
// and header keys combined with a body key (read message by message).
func TestSearchHeaderBulk(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, "Subject: first needle\r\n\r\nbody\r\n")                                                                         // 1
	e.deliver(t, "Subject: other\r\nX-Pad: "+strings.Repeat("p", 3*headMax)+"\r\nX-Late: needle\r\n\r\nbody\r\n")                 // 2
	e.deliver(t, "Subject: needle without body\r\n")                                                                              // 3
	e.deliver(t, "\r\nno header, needle in the body\r\n")                                                                         // 4
	e.deliver(t, "Subject: =?utf-8?q?encoded_N=C3=A9edle?=\r\n\r\nbody\r\n")                                                      // 5
	e.deliver(t, "Subject: needle to expunge\r\n\r\nbody\r\n")                                                                    // 6
	e.deliver(t, "From: \"Folded\" <fold@example.org>\r\nSubject: a long\r\n  FOLDED subject\r\nX-Other: folded\r\n\r\nbody\r\n") // 7
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.ok("STORE 6 +FLAGS (\\Deleted)")
	r.ok("EXPUNGE")
	for _, c := range []struct{ search, want string }{
		{"UID SEARCH HEADER Subject needle", "* SEARCH 1 3"},
		{"UID SEARCH HEADER X-Late needle", "* SEARCH 2"},
		{"UID SEARCH HEADER Delivered-To " + testUser, "* SEARCH 1 2 3 4 5 7"},
		{"UID SEARCH HEADER Subject néedle", "* SEARCH 5"},
		{"UID SEARCH OR HEADER Subject first HEADER X-Late needle", "* SEARCH 1 2"},
		{"UID SEARCH NOT HEADER Subject needle", "* SEARCH 2 4 5 7"},
		{"UID SEARCH HEADER Subject needle BODY body", "* SEARCH 1"},
		{"UID SEARCH BODY needle", "* SEARCH 4"},
		{"UID SEARCH HEADER Subject Folded", "* SEARCH 7"},
		{"UID SEARCH HEADER X-Other FOLDED", "* SEARCH 7"},
		{"UID SEARCH HEADER From \"folded <fold@\"", "* SEARCH 7"},
		{"UID SEARCH HEADER From fold@example.org", "* SEARCH 7"},
	} {
		u := r.ok("%s", c.search)
		if !has(u, c.want) || !strings.HasSuffix(strings.TrimSpace(strings.Join(u, "\n")), c.want) {
			t.Errorf("%s: got %q, want %q", c.search, u, c.want)
		}
	}
}
