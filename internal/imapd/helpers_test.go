package imapd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

const (
	testUser = "alice@example.test"
	testPass = "correct horse battery staple"
)

// env is a store with one user and an IMAP server on two loopback
// listeners: plain (STARTTLS) and implicit TLS.
type env struct {
	st        *sqlite.Store
	srv       *Server
	user      store.User
	plainAddr string
	tlsAddr   string
	clientTLS *tls.Config
	certDER   []byte // the server's self-signed certificate
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

func newEnv(t testing.TB, tune ...func(*Config)) *env {
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
	cert := selfSigned(t)
	cfg := Config{
		TLS:              &tls.Config{Certificates: []tls.Certificate{cert}},
		MaxMessageBytes:  1 << 20,
		FailedLoginDelay: 10 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if os.Getenv("IMAPD_DEBUG") != "" {
		cfg.Logger = slog.Default()
		cfg.Debug = os.Stderr
	}
	for _, f := range tune {
		f(&cfg)
	}
	srv := New(cfg, st)
	e := &env{st: st, srv: srv, user: u, clientTLS: &tls.Config{InsecureSkipVerify: true}, certDER: cert.Certificate[0]}
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

// deliver files a message into the user's INBOX as SMTP delivery does.
func (e *env) deliver(t testing.TB, msg string) {
	t.Helper()
	bw, err := e.st.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(bw, msg)
	err = e.st.Deliver(context.Background(), &store.Delivery{
		Blob: bw, From: "bob@example.org",
		Recipients: []store.LocalRecipient{{UserID: e.user.ID, Prefix: []byte("Delivered-To: " + testUser + "\r\n")}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// client logs in over implicit TLS with go-imap's client.
func (e *env) client(t testing.TB, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS, UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// raw is a line-level IMAP dialogue over a connection, for checking exact
// responses: r.cmd("SELECT INBOX") returns the untagged lines and the
// tagged one.
type raw struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	n    int
}

func (e *env) raw(t testing.TB, implicitTLS bool) *raw {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", e.tlsAddr, e.clientTLS)
	} else {
		conn, err = net.Dial("tcp", e.plainAddr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &raw{t: t, conn: conn, br: bufio.NewReader(conn)}
	if g := r.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	return r
}

// line reads one response line, with any literals it announces inlined.
func (r *raw) line() string {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("read: %v (so far %q)", err, sb.String()+l)
		}
		sb.WriteString(l)
		l = strings.TrimRight(l, "\r\n")
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:len(l)-1], "+"))
			if err == nil {
				buf := make([]byte, n)
				if _, err := io.ReadFull(r.br, buf); err != nil {
					r.t.Fatal(err)
				}
				sb.Write(buf)
				continue
			}
		}
		return strings.TrimRight(sb.String(), "\r\n")
	}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, s+"\r\n"); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends a tagged command and returns untagged lines and the tagged
// response without its tag.
func (r *raw) cmd(format string, args ...any) ([]string, string) {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("t%d", r.n)
	r.send(tag + " " + fmt.Sprintf(format, args...))
	var untagged []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed and returns its untagged lines.
func (r *raw) ok(format string, args ...any) []string {
	r.t.Helper()
	u, tagged := r.cmd(format, args...)
	if !strings.HasPrefix(tagged, "OK") {
		r.t.Fatalf("%s: got %q (untagged %q)", fmt.Sprintf(format, args...), tagged, u)
	}
	return u
}

// expect runs a command whose tagged answer must start with want.
func (r *raw) expect(want, format string, args ...any) []string {
	r.t.Helper()
	u, tagged := r.cmd(format, args...)
	if !strings.HasPrefix(tagged, want) {
		r.t.Fatalf("%s: got %q, want %s... (untagged %q)", fmt.Sprintf(format, args...), tagged, want, u)
	}
	return u
}

func (r *raw) login() {
	r.t.Helper()
	r.ok("LOGIN %q %q", testUser, testPass)
}

// has reports whether some line contains every one of parts.
func has(lines []string, parts ...string) bool {
	for _, l := range lines {
		all := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

const sampleMsg = "From: Bob Example <bob@example.org>\r\n" +
	"To: alice@example.test\r\n" +
	"Subject: Hello there\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n" +
	"Message-ID: <m1@example.org>\r\n" +
	"\r\n" +
	"Hi Alice,\r\nthe quick brown fox.\r\n"
