package courier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

// received is one message a receiver accepted.
type received struct {
	conn  int // which connection (1-based)
	from  string
	opts  smtp.MailOptions
	rcpts []string
	ropts []smtp.RcptOptions
	data  []byte
	tls   bool
	auth  string // user that authenticated, if any
}

// receiver is a real SMTP server (our go-smtp fork) on loopback that records
// what it receives and answers as a test tells it to.
type receiver struct {
	t    *testing.T
	addr string
	srv  *smtp.Server

	mu         sync.Mutex
	conns      int // TCP connections accepted
	sessions   int // sessions (a new one after STARTTLS)
	logouts    int // sessions ended (QUIT or a closed connection)
	mails      int // MAIL commands
	rcptCmds   int // RCPT commands
	msgs       []received
	rejectRcpt map[string]*smtp.SMTPError // recipient -> reply
	dataErr    *smtp.SMTPError
	sessionErr error         // refuse at EHLO
	dataDelay  time.Duration // time spent in DATA
	active     int           // transactions in DATA now
	maxActive  int
	authUser   string // accept AUTH PLAIN with these credentials
	authPass   string
}

type recvOpt func(*receiver)

func withTLS(cfg *tls.Config) recvOpt { return func(r *receiver) { r.srv.TLSConfig = cfg } }

func withAuth(user, pass string) recvOpt {
	return func(r *receiver) { r.authUser, r.authPass = user, pass }
}

func withDSN() recvOpt { return func(r *receiver) { r.srv.EnableDSN = true } }

func withUTF8() recvOpt { return func(r *receiver) { r.srv.EnableSMTPUTF8 = true } }

func withMaxSize(n int64) recvOpt { return func(r *receiver) { r.srv.MaxMessageBytes = n } }

// startReceiver serves on ip:port (see freePort).
func startReceiver(t *testing.T, ip string, port int, opts ...recvOpt) *receiver {
	t.Helper()
	r := &receiver{t: t, rejectRcpt: map[string]*smtp.SMTPError{}}
	r.srv = smtp.NewServer(r)
	r.srv.Domain = "receiver." + ip
	r.srv.ReadTimeout = 10 * time.Second
	r.srv.WriteTimeout = 10 * time.Second
	r.srv.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(r)
	}
	l := listen(t, ip, port)
	r.addr = l.Addr().String()
	go r.srv.Serve(countingListener{l, r})
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *receiver) NewSession(c *smtp.Conn) (smtp.Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessionErr != nil {
		return nil, r.sessionErr
	}
	r.sessions++
	_, isTLS := c.TLSConnectionState()
	return &rsession{r: r, conn: r.sessions, c: c, tls: isTLS}, nil
}

func (r *receiver) snapshot() (conns, mails, rcpts int, msgs []received) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, r.mails, r.rcptCmds, append([]received(nil), r.msgs...)
}

type rsession struct {
	r    *receiver
	conn int
	c    *smtp.Conn
	tls  bool
	cur  received
	auth string
}

func (s *rsession) AuthMechanisms() []string {
	if s.r.authUser == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *rsession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.r.authUser || pass != s.r.authPass {
			return smtp.ErrAuthFailed
		}
		s.auth = user
		return nil
	}), nil
}

func (s *rsession) Mail(from string, opts *smtp.MailOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.mails++
	s.cur = received{conn: s.conn, from: from, auth: s.auth}
	if opts != nil {
		s.cur.opts = *opts
	}
	_, s.cur.tls = s.c.TLSConnectionState()
	return nil
}

func (s *rsession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.rcptCmds++
	if e := s.r.rejectRcpt[to]; e != nil {
		return e
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	if opts != nil {
		s.cur.ropts = append(s.cur.ropts, *opts)
	} else {
		s.cur.ropts = append(s.cur.ropts, smtp.RcptOptions{})
	}
	return nil
}

func (s *rsession) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.active++
	if s.r.active > s.r.maxActive {
		s.r.maxActive = s.r.active
	}
	delay := s.r.dataDelay
	s.r.mu.Unlock()
	time.Sleep(delay)
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.active--
	if s.r.dataErr != nil {
		return s.r.dataErr
	}
	s.cur.data = b
	s.r.msgs = append(s.r.msgs, s.cur)
	return nil
}

func (s *rsession) Reset() { s.cur = received{} }
func (s *rsession) Logout() error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.logouts++
	return nil
}

// reserved holds the listeners freePort bound, by address, until
// startReceiver or startFake serves on them.
var reserved = struct {
	sync.Mutex
	m map[string]net.Listener
}{m: map[string]net.Listener{}}

// freePort returns a TCP port for the test's peers. With ips, the port is
// bound now on every one of them (the first picks it, the others take the
// same; another is picked when one of them has it taken) and the listeners
// are kept for startReceiver and startFake, so that nothing can take the
// port in between. Without ips, nothing listens on the port: connections
// to it are refused.
func freePort(t *testing.T, ips ...string) int {
	t.Helper()
	if len(ips) == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	for try := 0; try < 50; try++ {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) < len(ips) {
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		reserved.Lock()
		for _, l := range ls {
			reserved.m[l.Addr().String()] = l
		}
		reserved.Unlock()
		t.Cleanup(func() {
			reserved.Lock()
			for _, l := range ls {
				delete(reserved.m, l.Addr().String())
				l.Close()
			}
			reserved.Unlock()
		})
		return port
	}
	t.Fatalf("no port free on all of %v", ips)
	return 0
}

// listen returns the listener freePort bound for ip:port or, once that is
// taken, binds it again (as a test that restarts a receiver does), retrying
// for a while if the address is still in use.
func listen(t *testing.T, ip string, port int) net.Listener {
	t.Helper()
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	reserved.Lock()
	l := reserved.m[addr]
	delete(reserved.m, addr)
	reserved.Unlock()
	if l != nil {
		return l
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("listen %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newCourier returns a courier resolving through a test DNS server with
// zone and delivering to port.
func newCourier(t *testing.T, port int, zone map[string][]string, mod ...func(*Config)) *Courier {
	t.Helper()
	var recs []string
	for _, rs := range zone {
		recs = append(recs, rs...)
	}
	addr := dnstest.Start(t, dnstest.Zone(t, recs...))
	cfg := Config{
		Hostname:       "mail.sender.test",
		Resolver:       dnsx.New(addr, 2*time.Second),
		MXPort:         port,
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

func zone(records ...string) map[string][]string {
	return map[string][]string{"": records}
}

// source returns an open func for msg.
func source(msg string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil }
}

func deliver(t *testing.T, c *Courier, domain, from string, msg string, rcpts ...string) Attempt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Deliver(ctx, domain, Envelope{From: from, Recipients: rcpts, Size: int64(len(msg))}, source(msg))
}

// wantCodes checks each recipient's code and enhanced code.
func wantCodes(t *testing.T, att Attempt, want ...string) {
	t.Helper()
	if len(att.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(att.Results), len(want), att.Results)
	}
	for i, w := range want {
		r := att.Results[i]
		got := strconv.Itoa(r.Code) + " " + r.Enhanced
		if got != w {
			t.Errorf("result %d (%s) = %q (%s), want %q", i, r.Recipient, got, r.Text, w)
		}
	}
}

// testCert makes a self-signed certificate for names (and 127.0.0.1).
func testCert(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
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
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

var errBrokenCert = errors.New("no certificate for you")

// brokenTLS offers STARTTLS but fails every handshake.
func brokenTLS() *tls.Config {
	return &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errBrokenCert
	}}
}

// newCourierWithServFail resolves broken.example with SERVFAIL.
func newCourierWithServFail(t *testing.T, port int) *Courier {
	t.Helper()
	z := dnstest.Zone(t, "ok.example. A 127.0.0.1")
	z["broken.example"] = append(z["broken.example"], dnstest.ServFail("broken.example"))
	c := New(Config{Hostname: "mail.sender.test", Resolver: dnsx.New(dnstest.Start(t, z), 2*time.Second), MXPort: port})
	t.Cleanup(c.Close)
	return c
}

// nopConn is a net.Conn that does nothing, for writer tests.
type nopConn struct{ net.Conn }

func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// countingListener counts the TCP connections a receiver accepts.
type countingListener struct {
	net.Listener
	r *receiver
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.r.mu.Lock()
		l.r.conns++
		l.r.mu.Unlock()
	}
	return c, err
}
