package smtpd_test

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// fuzzPass is alice's password in FuzzSMTPSession. Her hash uses tiny
// argon2 parameters so that a correct AUTH costs microseconds, not the
// tens of milliseconds of the default ones.
const fuzzPass = "fuzz-secret"

// FuzzSMTPSession feeds a fuzzed client byte stream to a whole SMTP
// session over loopback TCP, against a real store. The first byte picks
// the listener and the pacing: bit 0 set is submission over implicit TLS
// (AUTH reachable), otherwise the MX; bit 1 set writes the input line by
// line, otherwise in one write (everything pipelined). The client then
// half-closes and reads until the server closes. The seeds, in
// testdata/fuzz/FuzzSMTPSession, start with '0' to '3': deliveries on the
// MX and on submission (AUTH PLAIN and LOGIN, DSN, DATA and BDAT), each
// SMTP smuggling end-of-data variant followed by a pipelined second
// transaction, STARTTLS with pipelined commands, nmap's open-relay
// addresses, odd syntax and bytes.
//
// Checked: no session panics (go-smtp recovers them; the log tells), the
// server ends the session, every reply line is "ddd" then space or dash
// and ends in CRLF (until a STARTTLS handshake starts), and every message
// handed to the store has only CRLF line ends.
func FuzzSMTPSession(f *testing.F) {
	fs := newFuzzServers(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		mode, input := input[0], input[1:]
		fs.run(t, mode&1 != 0, mode&2 != 0, input)
	})
}

// TestBDATThenHangUp is FuzzSMTPSession's first find, made repeatable: a
// client that hangs up right after a BDAT chunk (not LAST) used to make
// go-smtp's BDAT goroutine call Data on the session the closed connection
// had already dropped (nil), a panic. It was a race, hence the loop.
func TestBDATThenHangUp(t *testing.T) {
	fs := newFuzzServers(t)
	for range 50 {
		fs.run(t, false, false, []byte("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.org>\r\nBDAT 0\r\n"))
	}
	time.Sleep(100 * time.Millisecond) // a late panic, after the last session closed
	if n := fs.panics.Load(); n != 0 {
		t.Fatalf("%d sessions panicked", n)
	}
}

// fuzzServers are one store and two listeners (MX and submission over
// implicit TLS) shared by every run of a fuzz process.
type fuzzServers struct {
	mx, sub string
	client  *tls.Config
	panics  atomic.Int64
	bad     atomic.Pointer[string] // a stored message with a bare CR or LF
}

func newFuzzServers(f testing.TB) *fuzzServers {
	dir := f.TempDir()
	st, err := sqlite.Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.AddDomain(ctx, "example.org"); err != nil {
		f.Fatal(err)
	}
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(fuzzPass), salt, 1, 8, 1, 32)
	b64 := base64.RawStdEncoding
	hash := fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
	for _, u := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		if _, err := st.AddUser(ctx, u, hash); err != nil {
			f.Fatal(err)
		}
	}
	if err := st.AddAlias(ctx, "team@example.org", []string{"alice@example.org", "bob@example.org"}); err != nil {
		f.Fatal(err)
	}
	fs := &fuzzServers{}
	be := &checkingBackend{Backend: st, bad: &fs.bad}
	var serverTLS *tls.Config
	serverTLS, fs.client = selfSignedTLS(f)
	for _, submission := range []bool{false, true} {
		cfg := smtpd.Config{
			Hostname:            testHostname,
			TLS:                 serverTLS,
			MaxMessageBytes:     64 << 10,
			MaxRecipients:       20,
			MaxConnections:      100,
			MaxConnectionsPerIP: 100,
			MaxLineLength:       2000,
			CommandTimeout:      5 * time.Second,
			DataTimeout:         5 * time.Second,
			Logger:              slog.New(&panicWatch{panics: &fs.panics}),
			Submission:          submission,
		}
		srv := smtpd.New(cfg, be)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		if submission {
			fs.sub = l.Addr().String()
			go srv.ServeTLS(l, serverTLS)
		} else {
			fs.mx = l.Addr().String()
			go srv.Serve(l)
		}
		f.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	return fs
}

// replyLine is one line of an SMTP reply (RFC 5321 4.2), with no CR or LF
// inside (go-smtp echoes the EHLO name: patch 7 refuses one holding CR).
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9]([ -][^\r\n]*)?$`)

// run is one session: it sends input, half-closes, reads every reply and
// checks them.
func (fs *fuzzServers) run(t *testing.T, submission, lineByLine bool, input []byte) {
	addr := fs.mx
	if submission {
		addr = fs.sub
	}
	tc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	var c net.Conn = tc
	closeWrite := tc.(*net.TCPConn).CloseWrite
	if submission {
		tlsc := tls.Client(tc, fs.client)
		if err := tlsc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c, closeWrite = tlsc, tlsc.CloseWrite
	}
	before := fs.panics.Load()
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
					return // the server closed: what it said is checked below
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
	if fs.panics.Load() != before {
		t.Fatalf("a session panicked on %q", input)
	}
	if bad := fs.bad.Swap(nil); bad != nil {
		t.Fatalf("stored a message with a bare CR or LF on %q: %q", input, *bad)
	}
	checkReplies(t, out, submission, input)
}

// checkReplies checks that out is SMTP reply lines, each ending in CRLF.
// On the MX it stops at "220 2.0.0" after the greeting: TLS follows.
func checkReplies(t *testing.T, out []byte, submission bool, input []byte) {
	first := true
	for len(out) > 0 {
		i := bytes.Index(out, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("reply %q does not end in CRLF; input %q", out, input)
		}
		line := string(out[:i])
		out = out[i+2:]
		if !replyLine.MatchString(line) {
			t.Fatalf("malformed reply line %q; input %q", line, input)
		}
		if !submission && !first && strings.HasPrefix(line, "220 2.0.0 ") {
			return
		}
		first = false
	}
}

// checkingBackend is the store, with a look at every message delivered:
// the first one with a bare CR or LF is recorded in bad.
type checkingBackend struct {
	smtpd.Backend
	bad *atomic.Pointer[string]
}

// teeBlob keeps a copy of what the server writes to the store's blob.
type teeBlob struct {
	store.BlobWriter
	buf bytes.Buffer
}

func (b *teeBlob) Write(p []byte) (int, error) {
	b.buf.Write(p)
	return b.BlobWriter.Write(p)
}

func (cb *checkingBackend) NewBlob() (store.BlobWriter, error) {
	bw, err := cb.Backend.NewBlob()
	if err != nil {
		return nil, err
	}
	return &teeBlob{BlobWriter: bw}, nil
}

func (cb *checkingBackend) Deliver(ctx context.Context, d *store.Delivery) error {
	tb := d.Blob.(*teeBlob)
	data := tb.buf.Bytes()
	for _, r := range d.Recipients {
		if !crlfOnly(r.Prefix) {
			s := string(r.Prefix)
			cb.bad.Store(&s)
		}
	}
	if !crlfOnly(data) {
		s := string(data)
		cb.bad.Store(&s)
	}
	dd := *d
	dd.Blob = tb.BlobWriter
	return cb.Backend.Deliver(ctx, &dd)
}

// crlfOnly reports whether every CR and LF in b is part of a CRLF.
func crlfOnly(b []byte) bool {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		}
	}
	return true
}

// panicWatch is a log handler that counts the panics go-smtp recovers
// from (it logs "panic serving ..." through the server's logger).
type panicWatch struct {
	panics *atomic.Int64
}

func (h *panicWatch) Enabled(context.Context, slog.Level) bool { return true }

func (h *panicWatch) Handle(_ context.Context, r slog.Record) error {
	found := strings.Contains(r.Message, "panic")
	r.Attrs(func(a slog.Attr) bool {
		if strings.Contains(a.Value.String(), "panic serving") {
			found = true
		}
		return !found
	})
	if found {
		h.panics.Add(1)
	}
	return nil
}

func (h *panicWatch) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicWatch) WithGroup(string) slog.Handler      { return h }
