package smtpd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

const testHostname = "mx.example.org"

// testServer is a live SMTP server on a loopback port over a real store:
// domain example.org with users alice, bob and carol, and the alias
// team@example.org delivering to alice and bob.
type testServer struct {
	t    *testing.T
	addr string
	dir  string
	st   *sqlite.Store
	srv  *smtpd.Server
	// clientTLS trusts the server's throwaway certificate.
	clientTLS *tls.Config
}

// newTestServer starts a server; change lets a test adjust the config.
func newTestServer(t *testing.T, change func(*smtpd.Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.AddDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		if _, err := st.AddUser(ctx, u, "not-a-real-hash"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddAlias(ctx, "team@example.org", []string{"alice@example.org", "bob@example.org"}); err != nil {
		t.Fatal(err)
	}

	serverTLS, clientTLS := selfSignedTLS(t)
	cfg := smtpd.Config{
		Hostname:            testHostname,
		TLS:                 serverTLS,
		MaxMessageBytes:     1 << 20,
		MaxRecipients:       100,
		MaxConnections:      100,
		MaxConnectionsPerIP: 20,
		MaxLineLength:       2000,
		CommandTimeout:      30 * time.Second,
		DataTimeout:         30 * time.Second,
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if change != nil {
		change(&cfg)
	}
	srv := smtpd.New(cfg, st)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{t: t, addr: l.Addr().String(), dir: dir, st: st, srv: srv, clientTLS: clientTLS}
}

// selfSignedTLS makes a throwaway certificate for testHostname and a client
// config that trusts it.
func selfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: testHostname},
		DNSNames:              []string{testHostname},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: testHostname}
	return server, client
}

// message is one entry of a user's mailbox, as read back from the store.
type message struct {
	store.Entry
	Data string
}

// inbox returns every message in addr's INBOX.
func (ts *testServer) inbox(addr string) []message {
	return ts.mailbox(addr, "INBOX")
}

func (ts *testServer) mailbox(addr, name string) []message {
	ts.t.Helper()
	ctx := context.Background()
	u, err := ts.st.UserByAddress(ctx, addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	mb, err := ts.st.MailboxByName(ctx, u.ID, name)
	if err != nil {
		ts.t.Fatal(err)
	}
	entries, err := ts.st.Entries(ctx, mb.ID)
	if err != nil {
		ts.t.Fatal(err)
	}
	var out []message
	for _, e := range entries {
		r, err := ts.st.OpenEntry(ctx, mb.ID, e.UID)
		if err != nil {
			ts.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			ts.t.Fatal(err)
		}
		out = append(out, message{Entry: e, Data: string(b)})
	}
	return out
}

// inboxCounts returns how many messages each test user has in INBOX.
func (ts *testServer) inboxCounts() map[string]int {
	ts.t.Helper()
	out := map[string]int{}
	for _, u := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		out[u] = len(ts.inbox(u))
	}
	return out
}

// expectNothingStored checks that no mailbox got a message and that no
// message file is left behind, not even in blobs/incoming.
func (ts *testServer) expectNothingStored() {
	ts.t.Helper()
	for u, n := range ts.inboxCounts() {
		if n != 0 {
			ts.t.Errorf("%s has %d messages in INBOX, want 0", u, n)
		}
	}
	ts.expectNoBlobFiles()
}

// blobFiles lists every message file under the data directory.
func (ts *testServer) blobFiles() []string {
	ts.t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(ts.dir, "blobs"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	return files
}

func (ts *testServer) expectNoBlobFiles() {
	ts.t.Helper()
	if files := ts.blobFiles(); len(files) != 0 {
		ts.t.Errorf("message files left behind: %q", files)
	}
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// conn is a raw SMTP client connection: it writes exactly the bytes a test
// gives it and reads replies as code and text.
type conn struct {
	t  *testing.T
	nc net.Conn
	tp *textproto.Conn
}

// dial connects and checks the 220 greeting.
func (ts *testServer) dial() *conn {
	ts.t.Helper()
	c, greeting := ts.dialRaw()
	if !strings.HasPrefix(greeting, "220 "+testHostname+" ") {
		ts.t.Fatalf("greeting %q, want 220 %s ...", greeting, testHostname)
	}
	return c
}

// dialRaw connects and returns the first line the server sends.
func (ts *testServer) dialRaw() (*conn, string) {
	ts.t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		ts.t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &conn{t: ts.t, nc: nc, tp: textproto.NewConn(nc)}
	ts.t.Cleanup(func() { nc.Close() })
	line, err := c.tp.ReadLine()
	if err != nil {
		ts.t.Fatalf("reading greeting: %v", err)
	}
	return c, line
}

// startTLS upgrades the connection after a 220 reply to STARTTLS.
func (c *conn) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.expect("STARTTLS", 220, "2.0.0")
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.nc = tc
	c.tp = textproto.NewConn(tc)
}

// write sends raw bytes.
func (c *conn) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply.
func (c *conn) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		if _, ok := err.(*textproto.Error); !ok {
			c.t.Fatalf("reading reply: %v", err)
		}
	}
	return code, msg
}

// expectReply reads a reply and checks its code and enhanced status code;
// it returns the text after the enhanced code.
func (c *conn) expectReply(code int, enhanced string) string {
	c.t.Helper()
	got, msg := c.reply()
	if got != code || enhanced != "" && !strings.HasPrefix(msg, enhanced+" ") {
		c.t.Fatalf("reply %d %s, want %d %s", got, msg, code, enhanced)
	}
	return strings.TrimPrefix(msg, enhanced+" ")
}

// expect sends one command line and checks the reply.
func (c *conn) expect(cmd string, code int, enhanced string) string {
	c.t.Helper()
	c.write(cmd + "\r\n")
	return c.expectReply(code, enhanced)
}

// ehlo sends EHLO and returns the advertised extensions.
func (c *conn) ehlo(name string) []string {
	c.t.Helper()
	c.write("EHLO " + name + "\r\n")
	code, msg := c.reply()
	if code != 250 {
		c.t.Fatalf("EHLO: %d %s", code, msg)
	}
	lines := strings.Split(msg, "\n")
	return lines[1:]
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (c *conn) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.tp.ReadLine()
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", line)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection still open")
	}
}

// send runs one whole transaction with DATA and returns the final reply text.
func (c *conn) send(from string, to []string, data string) string {
	c.t.Helper()
	c.expect("MAIL FROM:<"+from+">", 250, "2.0.0")
	for _, rcpt := range to {
		c.expect("RCPT TO:<"+rcpt+">", 250, "2.0.0")
	}
	c.expect("DATA", 354, "")
	c.write(data + ".\r\n")
	return c.expectReply(250, "2.0.0")
}

// queueID extracts the queue ID from "OK: queued as <qid>".
func queueID(t *testing.T, reply string) string {
	t.Helper()
	const prefix = "OK: queued as "
	if !strings.HasPrefix(reply, prefix) {
		t.Fatalf("250 reply %q does not name the queue ID", reply)
	}
	return strings.TrimPrefix(reply, prefix)
}

// splitHeader splits a stored message into its first n header fields
// (folded lines joined with "\n", CRLFs removed) and the bytes after them.
func splitHeader(t *testing.T, data string, n int) (fields []string, rest string) {
	t.Helper()
	rest = data
	for len(fields) < n || strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\t") {
		i := strings.Index(rest, "\r\n")
		if i < 0 {
			t.Fatalf("message ends inside its first %d header fields: %q", n, data)
		}
		line := rest[:i]
		rest = rest[i+2:]
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			if len(fields) == 0 {
				t.Fatalf("message starts with a continuation line: %q", data)
			}
			fields[len(fields)-1] += "\n" + line
			continue
		}
		fields = append(fields, line)
	}
	return fields, rest
}
