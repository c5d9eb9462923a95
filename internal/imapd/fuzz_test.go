package imapd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/postern-mail/postern/internal/auth"
)

// FuzzIMAPSession feeds a fuzzed client byte stream to a whole IMAP
// session over loopback TCP, against a real store holding a few messages.
// The first byte picks the listener and the pacing: bit 0 set is implicit
// TLS (LOGIN reachable), otherwise the plain listener (STARTTLS,
// LOGINDISABLED); bit 1 set writes the input line by line, otherwise in
// one write (everything pipelined). The client then half-closes and reads
// until the server closes. The seeds, in testdata/fuzz/FuzzIMAPSession,
// start with '0' to '3': STARTTLS with pipelined commands, LOGIN and
// AUTHENTICATE PLAIN (with SASL-IR and literals), mailbox commands, FETCH
// of every item, SEARCH, STORE, COPY, MOVE, EXPUNGE, APPEND with
// synchronizing, non-synchronizing and binary literals, IDLE, malformed
// and deeply nested commands.
//
// Checked: no command panics (go-imap recovers them; the log tells), the
// server ends the session within the deadline, and the output is IMAP
// response lines ("* ", "+ " or a tag then OK, NO or BAD), each ending in
// CRLF, literals counted out (until a STARTTLS handshake starts).
func FuzzIMAPSession(f *testing.F) {
	var panics atomic.Int64
	e := newEnv(f, func(c *Config) {
		c.IdleTimeout = 5 * time.Second
		c.FailedLoginDelay = 0
		// Thousands of failed logins from one IP: no delay, no refusal.
		c.Throttle = auth.NewThrottle()
		c.Throttle.MaxPerIP = 1 << 30
		c.Throttle.DelayAfter = 0
		c.Logins = auth.NewCache(10, time.Hour)
		c.MaxMessageBytes = 64 << 10
		c.Logger = slog.New(&panicWatch{panics: &panics})
	})
	// Tiny argon2 parameters for the user and for unknown users, so that a
	// login costs microseconds, not the tens of milliseconds of the
	// default ones.
	cheap := func(pass string) string {
		salt := []byte("0123456789abcdef")
		key := argon2.IDKey([]byte(pass), salt, 1, 8, 1, 32)
		b64 := base64.RawStdEncoding
		return fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
	}
	if err := e.st.SetPassword(context.Background(), testUser, cheap(testPass)); err != nil {
		f.Fatal(err)
	}
	e.srv.dummyHash = cheap(auth.RandomPassword())
	e.deliver(f, sampleMsg)
	e.deliver(f, nestedMsg)
	e.deliver(f, "Subject: x\r\n\r\n.\r\n..\r\nno newline")
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		mode, input := input[0], input[1:]
		implicitTLS, lineByLine := mode&1 != 0, mode&2 != 0
		before := panics.Load()
		out := e.fuzzRun(t, implicitTLS, lineByLine, input)
		if panics.Load() != before {
			t.Fatalf("a command panicked on %q", input)
		}
		checkIMAPOutput(t, out, input)
	})
}

// fuzzRun is one session: it sends input, half-closes and returns what the
// server wrote.
func (e *env) fuzzRun(t *testing.T, implicitTLS, lineByLine bool, input []byte) []byte {
	addr := e.plainAddr
	if implicitTLS {
		addr = e.tlsAddr
	}
	tc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	var c net.Conn = tc
	closeWrite := tc.(*net.TCPConn).CloseWrite
	if implicitTLS {
		tlsc := tls.Client(tc, e.clientTLS)
		if err := tlsc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c, closeWrite = tlsc, tlsc.CloseWrite
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if lineByLine {
			for rest := input; len(rest) > 0; {
				i := bytes.IndexByte(rest, '\n') + 1
				if i == 0 {
					i = len(rest)
				}
				if _, err := c.Write(rest[:i]); err != nil {
					return // the server closed: what it said is checked
				}
				rest = rest[i:]
			}
		} else if _, err := c.Write(input); err != nil {
			return
		}
		closeWrite()
	}()
	out, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("session did not end; input %q; output %q", input, out)
	}
	wg.Wait()
	return out
}

// imapResponse is the start of a response line (RFC 9051 7): untagged,
// a continuation request, or a tagged status. The tag is the client's,
// echoed: go-imap reads it as an atom, so it may hold '+' (which RFC 9051
// leaves out of tags); "+00 NOOP" gets "+00 OK ...", misleading only the
// client that sent it.
var imapResponse = regexp.MustCompile(`^(\* |\+ |\+$|[^ *(){%"\\\]\x00-\x1f\x7f]+ (OK|NO|BAD)( |$))`)

// literalAtEnd finds a literal announced at the end of a line: {n} or ~{n}.
var literalAtEnd = regexp.MustCompile(`~?\{([0-9]+)\}$`)

// checkIMAPOutput checks that out is IMAP response lines, each ending in
// CRLF, with literals skipped by their count. It stops after the OK to a
// STARTTLS: TLS follows.
func checkIMAPOutput(t *testing.T, out, input []byte) {
	for len(out) > 0 {
		// One response: a line, and more lines after each literal.
		var resp []byte
		for {
			i := bytes.Index(out, []byte("\r\n"))
			if i < 0 {
				t.Fatalf("response %q does not end in CRLF; input %q", out, input)
			}
			line := out[:i]
			out = out[i+2:]
			if bytes.IndexAny(line, "\r\n") >= 0 {
				t.Fatalf("bare CR or LF in response line %q; input %q", line, input)
			}
			resp = append(resp, line...)
			m := literalAtEnd.FindSubmatch(line)
			if m == nil {
				break
			}
			n, err := strconv.Atoi(string(m[1]))
			if err != nil || n > len(out) {
				t.Fatalf("literal of %s bytes with %d left; input %q", m[1], len(out), input)
			}
			out = out[n:]
		}
		if !imapResponse.Match(resp) {
			t.Fatalf("malformed response %q; input %q", resp, input)
		}
		if bytes.Contains(resp, []byte(" OK Begin TLS negotiation now")) {
			return
		}
	}
}

// panicWatch is a log handler that counts the panics go-imap recovers
// from (it logs "panic handling command ..." through the server's logger).
type panicWatch struct {
	panics *atomic.Int64
}

func (h *panicWatch) Enabled(context.Context, slog.Level) bool { return true }

func (h *panicWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.panics.Add(1)
	}
	return nil
}

func (h *panicWatch) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicWatch) WithGroup(string) slog.Handler      { return h }
