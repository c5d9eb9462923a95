package imapd

import (
	"strings"
	"testing"
)

// TestMalformedTagOrName: a line whose tag or command name cannot be
// parsed gets BAD with a reason (tagged when the tag could be read) instead
// of a silent close. After login the session goes on; before it, BYE
// follows and the connection is closed, as for an unknown command.
func TestMalformedTagOrName(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ in, want string }{
		{"", "* BAD [CLIENTBUG] Syntax error in tag"},
		{"   ", "* BAD [CLIENTBUG] Syntax error in tag"},
		{"*", "* BAD [CLIENTBUG] Syntax error in tag"},
		{"(x) NOOP", "* BAD [CLIENTBUG] Syntax error in tag"},
		{"\x00\x01 NOOP", "* BAD [CLIENTBUG] Syntax error in tag"},
		{"a1", "a1 BAD [CLIENTBUG] Syntax error in tag or command name"},
		{"a1 ", "a1 BAD [CLIENTBUG] Syntax error in tag or command name"},
		{"a1 (NOOP)", "a1 BAD [CLIENTBUG] Syntax error in tag or command name"},
		{"a1 UID", "a1 BAD [CLIENTBUG] Syntax error in tag or command name"},
		{"a1 UID {3}", "a1 BAD [CLIENTBUG] Syntax error in tag or command name"},
	}
	r := e.raw(t, true)
	r.login()
	for _, c := range cases {
		r.send(c.in)
		if l := r.line(); !strings.HasPrefix(l, c.want) {
			t.Errorf("after login, %q: got %q, want %s...", c.in, l, c.want)
		}
		r.ok("NOOP")
	}
	for _, c := range cases {
		r := e.raw(t, true)
		r.send(c.in)
		if l := r.line(); !strings.HasPrefix(l, c.want) {
			t.Errorf("before login, %q: got %q, want %s...", c.in, l, c.want)
		}
		if l := r.line(); !strings.HasPrefix(l, "* BYE") {
			t.Errorf("before login, %q: got %q, want * BYE", c.in, l)
		}
		r.closed()
	}
}

// TestLongBadLineClosed: a bad command whose rest is over the line limit
// is not half-skipped (its tail would be read as a command): BAD [TOOBIG]
// and the connection is closed.
func TestLongBadLineClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxLineLength = 1000 })
	r := e.raw(t, true)
	r.login()
	r.send("a1 NOOP junk " + strings.Repeat("x", 1000) + " a2 DELETE INBOX")
	if l := r.line(); !strings.HasPrefix(l, "a1 BAD [TOOBIG]") {
		t.Fatalf("got %q, want a1 BAD [TOOBIG]", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	r.closed()
	r = e.raw(t, true)
	r.login()
	r.send("a1 " + strings.Repeat("(", 1000) + " a2 DELETE INBOX")
	if l := r.line(); !strings.HasPrefix(l, "a1 BAD [TOOBIG]") && !strings.HasPrefix(l, "* BAD [TOOBIG]") {
		t.Fatalf("got %q, want BAD [TOOBIG]", l)
	}
}
