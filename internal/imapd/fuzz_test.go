package imapd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
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

	"github.com/postern-mail/postern/internal/auth"
)

// FuzzIMAPSession feeds a fuzzed client byte stream to a whole IMAP
// session over loopback TCP, against a real store holding a few messages.
// The first byte picks the listener and the pacing: bit 0 set is implicit
// TLS (LOGIN reachable), otherwise the plain listener (STARTTLS,
// LOGINDISABLED); bit 1 set writes the input line by line, otherwise in
// one write (everything pipelined). Seeds use '0' to '3'. The client then
// half-closes and reads until the server closes.
//
// Checked: no command panics (go-imap recovers them; the log tells), the
// server ends the session within the deadline, and the output is IMAP
// response lines ("* ", "+ " or a tag then OK, NO or BAD), each ending in
// CRLF, literals counted out (until a STARTTLS handshake starts).
func FuzzIMAPSession(f *testing.F) {
	for _, s := range imapFuzzSeeds() {
		f.Add([]byte(s))
	}
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

// imapFuzzSeeds are dialogues for FuzzIMAPSession (first byte: the mode).
func imapFuzzSeeds() []string {
	login := "a LOGIN " + testUser + " \"" + testPass + "\"\r\n"
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPass))
	msg := "From: x@y.test\r\nSubject: appended\r\n\r\nhello\r\n"
	n := strconv.Itoa(len(msg))
	return []string{
		// Before TLS: CAPABILITY, LOGINDISABLED, STARTTLS with pipelined commands.
		"0a CAPABILITY\r\nb NOOP\r\nc LOGIN " + testUser + " x\r\nd AUTHENTICATE PLAIN\r\ne STARTTLS\r\nf CAPABILITY\r\n",
		"2a STARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"0a ID (\"name\" \"fuzz\")\r\nb ENABLE IMAP4rev2\r\nz LOGOUT\r\n",
		// Logged in: mailbox commands.
		"1" + login + "b LIST \"\" \"*\"\r\nc LIST (SUBSCRIBED) \"\" \"%\" RETURN (CHILDREN STATUS (MESSAGES UNSEEN SIZE))\r\nd LSUB \"\" *\r\ne NAMESPACE\r\nf CREATE Foo/Bar\r\ng CREATE Archive (USE (\\Archive))\r\nh RENAME Foo/Bar Foo/Baz\r\ni SUBSCRIBE Foo/Baz\r\nj STATUS Foo/Baz (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)\r\nk DELETE Foo/Baz\r\nl UNSUBSCRIBE Foo/Baz\r\nm DELETE Foo\r\nz LOGOUT\r\n",
		// Logged in with SASL-IR: SELECT and FETCH everything.
		"3a AUTHENTICATE PLAIN " + plain + "\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From Subject)])\r\nd FETCH 2 (BODY[1.2.MIME] BODY[2]<0.5> BINARY[1.1] BINARY.SIZE[1.1] BINARY.PEEK[2]<1.3> RFC822.HEADER RFC822.TEXT)\r\ne UID FETCH 1:* (BODY[] BODY[TEXT] BODY[HEADER])\r\nf FETCH * FAST\r\ng FETCH 1,3 ALL\r\nh FETCH 99 FULL\r\nz LOGOUT\r\n",
		"1a AUTHENTICATE PLAIN\r\n" + plain + "\r\nb EXAMINE INBOX\r\nc SEARCH ALL\r\nd UID SEARCH RETURN (MIN MAX COUNT ALL) OR SUBJECT nested FROM bob SINCE 1-Jan-2000 NOT DELETED\r\ne SEARCH CHARSET UTF-8 TEXT {6}\r\nhällo\r\nf SEARCH 1:* LARGER 10 SMALLER 100000 HEADER Subject x BODY hello UNSEEN KEYWORD foo\r\ng SEARCH SAVE UID 1:*\r\nh FETCH $ FLAGS\r\nz LOGOUT\r\n",
		// Flags, copy, move, expunge.
		"1" + login + "b SELECT INBOX\r\nc STORE 1 +FLAGS (\\Seen \\Flagged $Label1)\r\nd UID STORE 1:* -FLAGS.SILENT (\\Seen)\r\ne STORE 2 FLAGS (\\Deleted)\r\nf CREATE Trash\r\ng COPY 1:2 Trash\r\nh UID MOVE 3 Trash\r\ni EXPUNGE\r\nj UID EXPUNGE 1:*\r\nk CLOSE\r\nl SELECT Trash\r\nm UNSELECT\r\nz LOGOUT\r\n",
		// APPEND: synchronizing and non-synchronizing literals, flags, date.
		"3" + login + "b APPEND INBOX (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {" + n + "}\r\n" + msg + "\r\nc APPEND INBOX {" + n + "+}\r\n" + msg + "\r\nd APPEND Nowhere {3}\r\nabc\r\ne APPEND INBOX {99999999}\r\nf APPEND INBOX ~{5+}\r\n\x00\x01\x02\x03\x04\r\nz LOGOUT\r\n",
		// IDLE, then DONE; NOOP and CHECK in between.
		"1" + login + "b SELECT INBOX\r\nc IDLE\r\nDONE\r\nd NOOP\r\ne CHECK\r\nf IDLE\r\nx\r\nz LOGOUT\r\n",
		// Malformed and odd input.
		"1" + login + "\r\n*\r\na1\r\na1 (NOOP)\r\na1 UID\r\na1 FETCH\r\na2 SELECT\r\na3 SELECT {3}\r\nIN\r\na4 FETCH 1:* (BODY[\r\na5 FETCH 4294967295:1 FLAGS\r\na6 STORE 1 +FLAGS (\\Unknown)\r\n\x00\xff\r\n\n\r\r\na7 LOGIN a b\r\n",
		"1" + login + "a SELECT INBOX\r\nb FETCH 1 BODY[" + strings.Repeat("1.", 200) + "1]\r\nc SEARCH " + strings.Repeat("NOT ", 300) + "ALL\r\nd SEARCH " + strings.Repeat("(", 200) + "ALL" + strings.Repeat(")", 200) + "\r\ne FETCH 1 (BODY[]<4294967295.4294967295>)\r\n",
		"3a LOGIN {" + strconv.Itoa(len(testUser)) + "}\r\n" + testUser + " {" + strconv.Itoa(len(testPass)) + "+}\r\n" + testPass + "\r\nb SELECT \"INBOX\" (CONDSTORE)\r\nc LIST \"\" {10000}\r\n",
	}
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
// a continuation request, or a tagged status.
var imapResponse = regexp.MustCompile(`^(\* |\+ |\+$|[^ +*(){%"\\\]\x00-\x1f\x7f]+ (OK|NO|BAD)( |$))`)

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
