package imapd

import (
	"io"
	"strings"
	"testing"
	"time"
)

// closed checks that the server closed the connection after its last line.
func (r *raw) closed() {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := r.br.ReadByte(); err != io.EOF {
		r.t.Fatalf("connection still open: read %q, %v", b, err)
	}
}

// TestLiteralTooLargeRefusedBeforeContinuation: a synchronizing literal
// over MaxLiteralSize gets NO [TOOBIG] at once, instead of "+", and the
// next line is read as a new command.
func TestLiteralTooLargeRefusedBeforeContinuation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxLiteralSize = 100 })
	r := e.raw(t, true)
	r.send("a1 LOGIN {101}")
	if l := r.line(); !strings.HasPrefix(l, "a1 NO [TOOBIG]") {
		t.Fatalf("LOGIN with a 101-byte literal: %q, want a1 NO [TOOBIG]", l)
	}
	r.login()
	r.send("a2 SELECT {5000}")
	if l := r.line(); !strings.HasPrefix(l, "a2 NO [TOOBIG]") {
		t.Fatalf("SELECT with a 5000-byte literal: %q", l)
	}
	// A literal at the limit is fine; what follows it on the line is read.
	name := "INBOX" + strings.Repeat("x", 95)
	r.ok("CREATE %q", name)
	r.send("a3 SELECT {100}")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("SELECT with a 100-byte literal: %q, want a continuation", l)
	}
	r.send(name)
	for {
		l := r.line()
		if strings.HasPrefix(l, "a3 ") {
			if !strings.HasPrefix(l, "a3 OK") {
				t.Fatalf("SELECT of a literal name: %q", l)
			}
			break
		}
	}
	r.expect("OK", "SEARCH SUBJECT {3+}\r\nfoo")
	r.ok("NOOP")
	// The literals of one command count together.
	r.expect("OK", "SEARCH SUBJECT {50+}\r\n%s SUBJECT {50+}\r\n%s", strings.Repeat("a", 50), strings.Repeat("b", 50))
	r.send("a4 SEARCH SUBJECT {60+}\r\n" + strings.Repeat("a", 60) + " SUBJECT {41}")
	if l := r.line(); !strings.HasPrefix(l, "a4 NO [TOOBIG]") {
		t.Fatalf("second literal over the total: %q, want a4 NO [TOOBIG]", l)
	}
	r.ok("NOOP")
}

// TestNonSyncLiteralTooLarge: a non-synchronizing literal over the limit
// cannot be skipped safely, so it gets BAD [TOOBIG] and the connection is
// closed: its data is never read as commands.
func TestNonSyncLiteralTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxLiteralSize = 100 })
	r := e.raw(t, true)
	r.login()
	r.send("a1 SELECT {200+}\r\n" + "a9 DELETE INBOX" + strings.Repeat(" ", 185))
	if l := r.line(); !strings.HasPrefix(l, "a1 BAD [TOOBIG]") {
		t.Fatalf("got %q, want a1 BAD [TOOBIG]", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	r.closed()
}

// TestAppendNonSyncTooLarge: the same for APPEND over APPENDLIMIT.
func TestAppendNonSyncTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageBytes = 1000 })
	r := e.raw(t, true)
	r.login()
	r.send("a1 APPEND INBOX {1001+}\r\n" + "a9 LOGOUT\r\n" + strings.Repeat("x", 1001-11))
	if l := r.line(); !strings.HasPrefix(l, "a1 BAD [TOOBIG]") {
		t.Fatalf("got %q, want a1 BAD [TOOBIG]", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	r.closed()
	// A synchronizing one is refused before the continuation, the
	// connection stays usable.
	r = e.raw(t, true)
	r.login()
	r.send("a1 APPEND INBOX {1001}")
	if l := r.line(); !strings.HasPrefix(l, "a1 NO [TOOBIG]") {
		t.Fatalf("got %q", l)
	}
	r.ok("NOOP")
}

// TestLineTooLong: a command line of exactly MaxLineLength bytes (CRLF
// included) is served; one byte more gets BAD [TOOBIG] and the connection
// is closed, wherever the limit is crossed.
func TestLineTooLong(t *testing.T) {
	const max = 1000
	e := newEnv(t, func(c *Config) { c.MaxLineLength = max })
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	pad := func(n int) string {
		prefix := `t2 SEARCH SUBJECT "`
		return prefix + strings.Repeat("x", n-len(prefix)-3) + `"`
	}
	r.n = 1
	r.ok("%s", strings.TrimPrefix(pad(max), "t2 "))
	r.send(strings.Replace(pad(max+1), "t2", "a3", 1))
	if l := r.line(); !strings.HasPrefix(l, "a3 BAD [TOOBIG]") {
		t.Fatalf("line of %d bytes: %q, want a3 BAD [TOOBIG]", max+1, l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	r.closed()

	// Literal data does not count, the text around it does.
	r = e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.expect("OK", "SEARCH SUBJECT {900+}\r\n%s SUBJECT {900+}\r\n%s", strings.Repeat("y", 900), strings.Repeat("z", 900))
	r.send("a4 SEARCH SUBJECT {1+}\r\ny" + strings.Repeat(" SUBJECT y", 100))
	if l := r.line(); !strings.HasPrefix(l, "a4 BAD [TOOBIG]") {
		t.Fatalf("long text after a literal: %q", l)
	}

	// Too long before the tag ends: an untagged BAD.
	r = e.raw(t, true)
	r.send(strings.Repeat("a", max+10) + " NOOP")
	if l := r.line(); !strings.HasPrefix(l, "* BAD [TOOBIG]") {
		t.Fatalf("long tag: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	r.closed()
}

// TestBinaryPartialOrigin: a partial BINARY fetch names its origin in the
// response (RFC 3516 4.2, RFC 9051 7.5.2), as BODY[]<origin> does.
func TestBinaryPartialOrigin(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	u := r.ok("FETCH 1 (BINARY.PEEK[1]<3.5>)")
	if !has(u, "BINARY[1]<3> ~{5}\r\nAlice") {
		t.Fatalf("FETCH BINARY partial: %q", u)
	}
}
