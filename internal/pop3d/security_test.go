package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/auth"
)

// TestCAPA: STLS only in plaintext, USER and SASL PLAIN only after TLS,
// no IMPLEMENTATION, no APOP, nothing about login after login.
func TestCAPA(t *testing.T) {
	e := newEnv(t)
	common := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"}
	c := e.dial(t)
	if got, want := c.okMulti("CAPA"), append(slices.Clone(common), "STLS"); !slices.Equal(got, want) {
		t.Fatalf("CAPA before TLS = %q, want %q", got, want)
	}
	c.stls()
	if got, want := c.okMulti("CAPA"), append(slices.Clone(common), "USER", "SASL PLAIN"); !slices.Equal(got, want) {
		t.Fatalf("CAPA after STLS = %q, want %q", got, want)
	}
	c.fail("STLS", "already")
	c.ok("USER " + testUser)
	c.ok("PASS " + testPass)
	if got := c.okMulti("CAPA"); !slices.Equal(got, common) {
		t.Fatalf("CAPA after login = %q, want %q", got, common)
	}
	c.ok("QUIT")

	c = e.dialTLS(t)
	if got, want := c.okMulti("CAPA"), append(slices.Clone(common), "USER", "SASL PLAIN"); !slices.Equal(got, want) {
		t.Fatalf("CAPA on implicit TLS = %q, want %q", got, want)
	}
	if got := c.okMulti("AUTH"); !slices.Equal(got, []string{"PLAIN"}) {
		t.Fatalf("AUTH = %q", got)
	}
}

// TestNoLoginBeforeTLS: USER, PASS and AUTH get a clear -ERR [AUTH] in
// plaintext, even with the right password, and APOP is refused.
func TestNoLoginBeforeTLS(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t)
	c.fail("USER "+testUser, "[AUTH] Plaintext authentication is not allowed before TLS")
	c.fail("PASS "+testPass, "[AUTH] Plaintext authentication is not allowed before TLS")
	c.fail("AUTH PLAIN "+plain("", testUser, testPass), "[AUTH] Plaintext authentication is not allowed before TLS")
	c.fail("APOP "+testUser+" c4c9334bac560ecc979e58001b3e22fb", "not supported")
	c.fail("STAT", "only valid after login")
	c.stls()
	c.fail("PASS "+testPass, "USER first") // USER before TLS is forgotten
	c.ok("USER " + testUser)
	c.ok("PASS " + testPass)
}

// TestAuthFailures: unknown user and wrong password get the same answer;
// PLAIN with and without an initial response, cancel, bad base64, a
// foreign authorization identity.
func TestAuthFailures(t *testing.T) {
	e := newEnv(t)
	c := e.dialTLS(t)
	c.ok("USER nobody@example.test")
	unknown := c.fail("PASS "+testPass, "[AUTH]")
	c.ok("USER " + testUser)
	wrong := c.fail("PASS wrong", "[AUTH]")
	if unknown != wrong {
		t.Fatalf("unknown user %q and wrong password %q differ", unknown, wrong)
	}
	if r := c.fail("AUTH PLAIN "+plain("", "nobody@example.test", "x"), "[AUTH]"); r != wrong {
		t.Fatalf("AUTH PLAIN unknown user %q, want %q", r, wrong)
	}
	c.fail("AUTH PLAIN "+plain("bob@example.test", testUser, testPass), "[AUTH] Authorization identity")
	c.fail("AUTH PLAIN !!!", "base64")
	c.fail("AUTH CRAM-MD5", "Unsupported")
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("AUTH PLAIN without initial response: %q, want \"+ \"", r)
	}
	c.fail("*", "cancelled")
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("AUTH PLAIN: %q", r)
	}
	c.ok(plain(testUser, testUser, testPass))
	c.ok("QUIT")
}

// TestFailedLoginDelay: a failed login takes at least the configured delay.
func TestFailedLoginDelay(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FailedLoginDelay = 300 * time.Millisecond })
	c := e.dialTLS(t)
	c.ok("USER nobody@example.test")
	start := time.Now()
	c.fail("PASS x", "[AUTH]")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("failed login answered after %v, want >= 300ms", d)
	}
}

// TestThrottle: the failure that reaches MaxPerIP is answered like any
// other; then the IP is in its cool-down: logins get -ERR [SYS/TEMP] even
// with the right password, and new connections (plain and implicit TLS)
// get -ERR [SYS/TEMP] instead of the greeting and are closed, until the
// cool-down ends.
func TestThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, func(c *Config) {
		c.MaxErrors = 100
		c.Throttle = &auth.Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: 10 * time.Minute, Now: clock}
	})
	c := e.dialTLS(t)
	for i := range 3 {
		c.fail("AUTH PLAIN "+plain("", testUser, fmt.Sprint("wrong", i)), "[AUTH] Invalid credentials")
	}
	c.fail("AUTH PLAIN "+plain("", testUser, testPass), "[SYS/TEMP] Too many failed logins")
	c.ok("USER nobody@example.test")
	c.fail("PASS x", "[SYS/TEMP] Too many failed logins")
	for _, addr := range []string{e.plainAddr, e.tlsAddr} {
		var conn net.Conn
		var err error
		if addr == e.tlsAddr {
			conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		} else {
			conn, err = net.Dial("tcp", addr)
		}
		if err != nil {
			t.Fatal(err)
		}
		r := &client{t: t, conn: conn, br: bufio.NewReader(conn)}
		if g := r.line(); !strings.HasPrefix(g, "-ERR [SYS/TEMP] Too many failed logins") {
			t.Errorf("new connection to %s in the cool-down: %q", addr, g)
		}
		if !r.closed() {
			t.Errorf("connection to %s left open", addr)
		}
		conn.Close()
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	e.login(t)
}

// TestSTLSInjection: plaintext pipelined behind STLS is not executed
// after TLS; the connection is closed (RFC 2595, CVE-2011-0411).
func TestSTLSInjection(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t)
	c.send("STLS\r\nUSER " + testUser + "\r\nCAPA")
	if r := c.line(); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("STLS with pipelined plaintext: %q, want -ERR", r)
	}
	if !c.closed() {
		t.Fatal("connection left open after STLS injection")
	}
}

// TestBadInput: unknown commands, wrong states, bad arguments and
// over-long lines get -ERR with a clear text; the session goes on.
func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxErrors = 100 })
	e.deliver(t, sampleMsg)
	c := e.dialTLS(t)
	c.fail("FOO", "Unknown command")
	c.fail("", "Empty command")
	c.fail("RETR 1", "only valid after login")
	c.fail("NOOP", "only valid after login")
	c.fail("USER", "needs a user name")
	c.fail("CAPA x", "no argument")
	c.fail("USER "+strings.Repeat("a", 300), "too long")
	c.ok("user " + testUser) // keywords are case-insensitive
	c.ok("pass " + testPass)
	c.fail("USER x", "only valid before login")
	c.fail("STLS", "only valid before login")
	for _, cmd := range []string{"RETR", "RETR x", "RETR 0", "RETR 2", "RETR -1", "RETR +1", "RETR 99999999999999999999", "RETR 1 2",
		"TOP 1", "TOP 1 x", "TOP x 1", "TOP 1 -1", "DELE", "DELE 2", "LIST 0", "UIDL 9", "STAT 1", "RSET x", "NOOP x"} {
		r := c.cmd(cmd)
		if !strings.HasPrefix(r, "-ERR ") || len(r) < 10 {
			t.Errorf("%q: got %q, want -ERR with a reason", cmd, r)
		}
	}
	c.fail(strings.Repeat("X", 10000), "too long")
	c.ok("STAT") // still usable
	c.ok("QUIT")
}

// TestTooManyErrors closes the connection after MaxErrors.
func TestTooManyErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxErrors = 3 })
	c := e.dial(t)
	c.fail("A", "Unknown")
	c.fail("B", "Unknown")
	c.fail("C", "Unknown")
	if r := c.line(); !strings.Contains(r, "Too many errors") {
		t.Fatalf("after 3 errors: %q", r)
	}
	if !c.closed() {
		t.Fatal("connection left open after too many errors")
	}
}

// TestIdleTimeout closes a silent connection and deletes nothing.
func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	e.deliver(t, sampleMsg)
	c := e.login(t)
	c.ok("DELE 1")
	if !c.closed() {
		t.Fatal("idle connection not closed")
	}
	if len(e.inbox(t)) != 1 {
		t.Fatal("a timed-out session deleted a message")
	}
}

// TestConnectionLimit refuses connections over the per-IP limit.
func TestConnectionLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnectionsPerIP = 2 })
	e.dial(t)
	e.dial(t)
	conn, err := net.Dial("tcp", e.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "-ERR [SYS/TEMP] Too many connections") {
		t.Fatalf("third connection got %q", b)
	}
}

// panicky is a backend whose OpenEntry panics, to check that a session
// panic closes that connection alone and releases the user's lock.
type panicky struct{ Backend }

func (p panicky) OpenEntry(ctx context.Context, mailboxID int64, uid uint32) (io.ReadCloser, error) {
	panic("test panic in OpenEntry")
}

func TestPanicClosesOneConnection(t *testing.T) {
	st, u := newStore(t)
	e := newEnvOn(t, st, u, panicky{st})
	e.deliver(t, sampleMsg)
	e.deliver(t, sampleMsg)
	other := e.dial(t)
	c := e.login(t)
	c.ok("DELE 1")
	c.send("RETR 2")
	if !c.closed() {
		t.Fatal("connection open after a panic")
	}
	if n := e.srv.panics.Load(); n != 1 {
		t.Fatalf("%d panics recorded, want 1", n)
	}
	other.ok("CAPA")
	other.multi()
	c = e.login(t) // lock released
	c.ok("QUIT")
	if len(e.inbox(t)) != 2 {
		t.Fatal("a panicking session deleted a message")
	}
}
