package imapd

import (
	"strings"
	"testing"
)

// TestCopyMoveIntoSelectedMailbox: the copies get new UIDs and arrive as
// EXISTS; MOVE to the same mailbox expunges the originals (RFC 6851 3.3).
func TestCopyMoveIntoSelectedMailbox(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	u, tagged := r.cmd("COPY 1:2 INBOX")
	if !strings.HasPrefix(tagged, "OK [COPYUID ") || !strings.Contains(tagged, " 1:2 3:4]") || !has(u, "* 4 EXISTS") {
		t.Fatalf("copy into selected: %q %q", u, tagged)
	}
	u, tagged = r.cmd("UID MOVE 1 INBOX")
	if !strings.HasPrefix(tagged, "OK") || !has(u, "OK [COPYUID ", " 1 5]") || !has(u, "* 1 EXPUNGE") || !has(u, "* 4 EXISTS") {
		t.Fatalf("move into selected: %q %q", u, tagged)
	}
	u = r.ok("UID SEARCH ALL")
	if !has(u, "* SEARCH 2 3 4 5") {
		t.Fatalf("uids %q", u)
	}
}

// TestSearchResultAndReturnOptions: ESEARCH (RFC 4731) and SEARCHRES
// (RFC 5182) with "$" in later commands.
func TestSearchResultAndReturnOptions(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 4; i++ {
		e.deliver(t, sampleMsg)
	}
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.ok("STORE 2,4 +FLAGS.SILENT (\\Flagged)")
	u := r.ok("SEARCH RETURN (MIN MAX COUNT) FLAGGED")
	if !has(u, "ESEARCH", "MIN 2", "MAX 4", "COUNT 2") {
		t.Fatalf("esearch %q", u)
	}
	r.ok("UID SEARCH RETURN (SAVE) FLAGGED")
	u = r.ok("FETCH $ (UID)")
	if len(u) != 2 || !has(u, "* 2 FETCH (UID 2)") || !has(u, "* 4 FETCH (UID 4)") {
		t.Fatalf("fetch $: %q", u)
	}
	u = r.ok("SEARCH UNFLAGGED $")
	if !has(u, "* SEARCH") || has(u, "* SEARCH 1") {
		t.Fatalf("$ as a key: %q", u)
	}
	u = r.ok("SEARCH CHARSET UTF-8 TEXT fox")
	if !has(u, "* SEARCH 1 2 3 4") {
		t.Fatalf("charset utf-8: %q", u)
	}
	r.expect("NO [BADCHARSET", "SEARCH CHARSET KOI8-R TEXT fox")
	u = r.ok("SEARCH 2:* NOT 3")
	if !has(u, "* SEARCH 2 4") {
		t.Fatalf("sequence set with *: %q", u)
	}
	u = r.ok("UID SEARCH UID 3:*")
	if !has(u, "* SEARCH 3 4") {
		t.Fatalf("uid range: %q", u)
	}
	// "*" in a UID range is the highest UID even when the range starts above it.
	u = r.ok("UID FETCH 100:* (UID)")
	if !has(u, "* 4 FETCH (UID 4)") {
		t.Fatalf("100:* %q", u)
	}
}

// TestMalformedCommands: bad input gets BAD or NO, and the connection
// (and the server) carry on.
func TestMalformedCommands(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	for _, c := range []string{
		"FETCH 1 (FLAGS)", // not selected yet
		"SELECT",
		"NOSUCHCOMMAND",
		`LIST "" "*" RETURN (BOGUS)`,
		"STATUS INBOX (BOGUS)",
		"CREATE \"a\x01b\"",
	} {
		_, tagged := r.cmd("%s", c)
		if !strings.HasPrefix(tagged, "BAD") && !strings.HasPrefix(tagged, "NO") {
			t.Errorf("%q: %q", c, tagged)
		}
	}
	r.ok("SELECT INBOX")
	for _, c := range []string{"FETCH 0 FLAGS", "FETCH 1:x FLAGS", "FETCH 1 (BODY[1.)", "STORE 1 FLAGS.LOUD (\\Seen)", "UID STORE 1 +FLAGS (\\Nope)", "SEARCH BOGUSKEY", "COPY 1"} {
		_, tagged := r.cmd("%s", c)
		if !strings.HasPrefix(tagged, "BAD") && !strings.HasPrefix(tagged, "NO") {
			t.Errorf("%q: %q", c, tagged)
		}
	}
	r.ok("NOOP")
	// Another connection still works.
	r2 := e.raw(t, true)
	r2.login()
}

// TestExpungeFromAnotherSessionWaits: during FETCH, STORE and SEARCH a
// session must not renumber messages (RFC 9051 7.5.1); the EXPUNGE comes
// with the next command that allows it, and sequence numbers stay right
// throughout.
func TestExpungeFromAnotherSessionWaits(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.deliver(t, sampleMsg)
	}
	a := e.raw(t, true)
	a.login()
	a.ok("SELECT INBOX")
	b := e.raw(t, true)
	b.login()
	b.ok("SELECT INBOX")
	b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
	b.ok("EXPUNGE")

	u := a.ok("FETCH 2:3 (UID)")
	if has(u, "EXPUNGE") || !has(u, "* 2 FETCH (UID 2)") || !has(u, "* 3 FETCH (UID 3)") {
		t.Fatalf("fetch after another session's expunge: %q", u)
	}
	u = a.ok("SEARCH ALL")
	if has(u, "EXPUNGE") || !has(u, "* SEARCH 2 3") {
		t.Fatalf("search: %q", u)
	}
	u = a.ok("NOOP")
	if !has(u, "* 1 EXPUNGE") {
		t.Fatalf("NOOP: %q", u)
	}
	u = a.ok("FETCH 1:* (UID)")
	if len(u) != 2 || !has(u, "* 1 FETCH (UID 2)") || !has(u, "* 2 FETCH (UID 3)") {
		t.Fatalf("after EXPUNGE: %q", u)
	}
	// A message expunged elsewhere may still be asked for by its old number
	// before the client has been told: it is left out, not an error.
	b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
	b.ok("EXPUNGE")
	u = a.ok("FETCH 1 (UID BODY.PEEK[])")
	if has(u, "EXPUNGE") {
		t.Fatalf("EXPUNGE during FETCH: %q", u)
	}
	u = a.ok("NOOP")
	if !has(u, "* 1 EXPUNGE") {
		t.Fatalf("second NOOP: %q", u)
	}
}

// TestSetsOverlapAndOrder: overlapping, reversed and repeated ranges name
// each message once, answered in order.
func TestSetsOverlapAndOrder(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		e.deliver(t, sampleMsg)
	}
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
	r.ok("EXPUNGE") // UIDs now 1 3 4 5
	u := r.ok("FETCH 4,3:1,2,*:4 (UID)")
	want := []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)", "* 4 FETCH (UID 5)"}
	if len(u) != len(want) {
		t.Fatalf("got %q", u)
	}
	for i := range want {
		if u[i] != want[i] {
			t.Fatalf("got %q, want %q", u, want)
		}
	}
	u = r.ok("UID FETCH 5:2,1,2 (UID)")
	if len(u) != 4 || u[0] != "* 1 FETCH (UID 1)" || u[3] != "* 4 FETCH (UID 5)" {
		t.Fatalf("uid sets: %q", u)
	}
	u = r.ok("UID FETCH 2 (UID)") // expunged: nothing, no error
	if len(u) != 0 {
		t.Fatalf("expunged UID: %q", u)
	}
}

// TestEnableIMAP4rev2: after ENABLE IMAP4rev2 the session speaks RFC 9051:
// no \Recent, no RECENT or UNSEEN at SELECT, ESEARCH answers.
func TestEnableIMAP4rev2(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	u := r.ok("ENABLE IMAP4rev2")
	if !has(u, "* ENABLED IMAP4rev2") {
		t.Fatalf("enable: %q", u)
	}
	u = r.ok("SELECT INBOX")
	if has(u, "RECENT") || has(u, "[UNSEEN") || !has(u, "* 1 EXISTS") {
		t.Fatalf("rev2 SELECT: %q", u)
	}
	u = r.ok("FETCH 1 (FLAGS)")
	if has(u, `\Recent`) {
		t.Fatalf("rev2 FETCH: %q", u)
	}
	u = r.ok("SEARCH ALL")
	if !has(u, "* ESEARCH", "ALL 1") {
		t.Fatalf("rev2 SEARCH: %q", u)
	}
}
