package pop3d

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

const (
	testUser = "alice@example.test"
	testPass = "correct horse battery staple"
)

// env is a store with one user and a POP3 server on two loopback
// listeners: plain (STLS) and implicit TLS.
type env struct {
	st        *sqlite.Store
	srv       *Server
	user      store.User
	tlsConfig *tls.Config // the server's
	plainAddr string
	tlsAddr   string
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// newStore opens a store in a temporary directory with the test user.
func newStore(t testing.TB) (*sqlite.Store, store.User) {
	t.Helper()
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.AddDomain(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	hash, err := auth.HashPassword(testPass)
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.AddUser(ctx, testUser, hash)
	if err != nil {
		t.Fatal(err)
	}
	return st, u
}

// newEnv starts a server on a fresh store; tune may change its config and
// wrap the backend.
func newEnv(t testing.TB, tune ...func(*Config)) *env {
	t.Helper()
	st, u := newStore(t)
	return newEnvOn(t, st, u, st, tune...)
}

func newEnvOn(t testing.TB, st *sqlite.Store, u store.User, b Backend, tune ...func(*Config)) *env {
	t.Helper()
	cfg := Config{
		TLS:              &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
		FailedLoginDelay: 10 * time.Millisecond,
		IdleTimeout:      30 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if os.Getenv("POP3D_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range tune {
		f(&cfg)
	}
	srv := New(cfg, b)
	e := &env{st: st, srv: srv, user: u, tlsConfig: cfg.TLS}
	for i, serve := range []func(net.Listener) error{srv.Serve, srv.ServeTLS} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			e.plainAddr = l.Addr().String()
		} else {
			e.tlsAddr = l.Addr().String()
		}
		go serve(l)
	}
	t.Cleanup(func() { srv.Close() })
	return e
}

// deliver files a message into the user's INBOX as SMTP delivery does,
// with a Delivered-To prefix.
func (e *env) deliver(t testing.TB, msg string) {
	t.Helper()
	bw, err := e.st.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(bw, msg)
	err = e.st.Deliver(context.Background(), &store.Delivery{
		Blob: bw, From: "bob@example.org",
		Recipients: []store.LocalRecipient{{UserID: e.user.ID, Mailbox: "INBOX", Prefix: []byte("Delivered-To: " + testUser + "\r\n")}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// inbox returns the UIDs in the user's INBOX according to the store.
func (e *env) inbox(t testing.TB) []uint32 {
	t.Helper()
	ctx := context.Background()
	mb, err := e.st.MailboxByName(ctx, e.user.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	uids, err := e.st.UIDs(ctx, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	return uids
}

// client is a line-level POP3 dialogue over one connection.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// dial connects to the plain listener and reads the greeting.
func (e *env) dial(t testing.TB) *client {
	t.Helper()
	conn, err := net.Dial("tcp", e.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, conn)
}

// dialTLS connects to the implicit-TLS listener and reads the greeting.
func (e *env) dialTLS(t testing.TB) *client {
	t.Helper()
	conn, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, conn)
}

func newClient(t testing.TB, conn net.Conn) *client {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, br: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// login connects over implicit TLS and logs in with USER/PASS.
func (e *env) login(t testing.TB) *client {
	t.Helper()
	c := e.dialTLS(t)
	c.ok("USER " + testUser)
	c.ok("PASS " + testPass)
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// line reads one line without its CRLF; it fails the test on a missing CR.
func (c *client) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (so far %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the status line.
func (c *client) cmd(s string) string {
	c.t.Helper()
	c.send(s)
	return c.line()
}

// ok runs a command that must answer +OK.
func (c *client) ok(s string) string {
	c.t.Helper()
	r := c.cmd(s)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: got %q, want +OK", redact(s), r)
	}
	return r
}

// fail runs a command that must answer -ERR with want in its text.
func (c *client) fail(s, want string) string {
	c.t.Helper()
	r := c.cmd(s)
	if !strings.HasPrefix(r, "-ERR ") || !strings.Contains(r, want) {
		c.t.Fatalf("%s: got %q, want -ERR ...%s...", redact(s), r, want)
	}
	return r
}

// multi reads a multi-line body up to the dot, undoing dot-stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return lines
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		lines = append(lines, l)
	}
}

// okMulti runs a command that must answer +OK with a multi-line body.
func (c *client) okMulti(s string) []string {
	c.t.Helper()
	c.ok(s)
	return c.multi()
}

// stls upgrades the connection with STLS.
func (c *client) stls() {
	c.t.Helper()
	c.ok("STLS")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STLS handshake: %v", err)
	}
	c.conn = tc
	c.br = bufio.NewReader(tc)
}

// closed reports whether the server closed the connection (EOF within 5 s).
func (c *client) closed() bool {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

func plain(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

func redact(s string) string {
	if strings.HasPrefix(strings.ToUpper(s), "PASS ") {
		return "PASS ..."
	}
	return s
}

const sampleMsg = "From: Bob <bob@example.org>\r\n" +
	"To: alice@example.test\r\n" +
	"Subject: Hello\r\n" +
	"\r\n" +
	"line one\r\n" +
	"line two\r\n" +
	"line three\r\n"
