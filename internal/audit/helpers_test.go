package audit_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/audit"
	"github.com/postern-mail/postern/internal/server"
	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// startPostern runs Postern's own SMTP server in-process on a loopback
// port, with its self-signed certificate, domain example.org and users
// alice and bob. It returns the address.
func startPostern(t *testing.T) string { return startPosternWith(t, nil) }

// startPosternWith is startPostern with a change to the SMTP config.
func startPosternWith(t *testing.T, change func(*smtpd.Config)) string {
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
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		if _, err := st.AddUser(ctx, u, "not-a-real-hash"); err != nil {
			t.Fatal(err)
		}
	}
	tlsConfig, err := server.LoadTLS("", "", dir, "mx.example.org")
	if err != nil {
		t.Fatal(err)
	}
	cfg := smtpd.Config{
		Hostname: "mx.example.org", TLS: tlsConfig,
		MaxMessageBytes: 1 << 20, MaxRecipients: 100, MaxConnections: 100, MaxConnectionsPerIP: 20,
		MaxLineLength: 2000, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if change != nil {
		change(&cfg)
	}
	srv := smtpd.New(cfg, st)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return l.Addr().String()
}

// fastOptions are audit options with short timeouts for loopback tests.
func fastOptions(target string) audit.Options {
	return audit.Options{
		Target: target, Timeout: 3 * time.Second, Deadline: 20 * time.Second,
		SlowReply: 2 * time.Second, ReconnectDelay: 10 * time.Millisecond, Settle: 250 * time.Millisecond,
	}
}

func runAudit(t *testing.T, proto string, o audit.Options) *audit.Report {
	t.Helper()
	r, err := audit.Run(context.Background(), proto, o)
	if err != nil {
		t.Fatalf("audit %s %s: %v", proto, o.Target, err)
	}
	return r
}

func ids(r *audit.Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.ID)
	}
	return out
}

func wantFinding(t *testing.T, r *audit.Report, id string, sev audit.Severity) {
	t.Helper()
	f := r.Finding(id)
	if f == nil {
		t.Errorf("no %q finding; have %v", id, ids(r))
		return
	}
	if f.Severity != sev {
		t.Errorf("finding %s severity %s, want %s", id, f.Severity, sev)
	}
	if len(f.Evidence) == 0 || f.Fix == "" {
		t.Errorf("finding %s lacks evidence or a fix: %+v", id, f)
	}
}

func noFinding(t *testing.T, r *audit.Report, id string) {
	t.Helper()
	if f := r.Finding(id); f != nil {
		t.Errorf("unexpected finding %+v", *f)
	}
}

// fakeTLS is a throwaway certificate for the fake peers.
func fakeTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := server.LoadTLS("", "", t.TempDir(), "mx.fake.test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fakeConn is one connection to a fake peer, as its handler sees it.
type fakeConn struct {
	n      int // commands so far on this connection
	rcpts  int // RCPT commands so far on this connection
	isTLS  bool
	closed bool
}

// fakeServer is a small line-based test peer for behaviours Postern does
// not have (leaky VRFY, catch-all, tarpit, greylisting, open relay, a
// vulnerable STARTTLS, IMAP and POP3 servers). handle answers one command
// line; the reply "CLOSE" closes the connection without a word.
type fakeServer struct {
	addr     string
	greeting string
	// greetFn, when set, replaces greeting for the nth connection (from 1);
	// a greeting starting with 421 closes the connection after it.
	greetFn func(n int) string
	handle  func(c *fakeConn, line string) string
	tls     *tls.Config
	// injectable keeps the clear-text read buffer across STARTTLS, the
	// CVE-2011-0411 bug.
	injectable bool
	// lenientData ends DATA at a "." line ended by LF alone too, as servers
	// open to SMTP smuggling do.
	lenientData bool
	// starttls is the command and reply that start TLS, e.g. "STARTTLS"
	// and "220 go ahead"; for IMAP the reply gets the command's tag.
	starttlsVerb, starttlsReply string

	mu       sync.Mutex
	conns    int
	messages []string
	lines    []string
}

func startFake(t *testing.T, f *fakeServer) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(nc) }()
		}
	}()
	return f
}

// Conns is how many connections the fake accepted.
func (f *fakeServer) Conns() int { f.mu.Lock(); defer f.mu.Unlock(); return f.conns }

// Messages are the message bodies received after DATA.
func (f *fakeServer) Messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.messages...)
}

// Lines are every command line received, on every connection.
func (f *fakeServer) Lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

func (f *fakeServer) serve(nc net.Conn) {
	f.mu.Lock()
	f.conns++
	n := f.conns
	f.mu.Unlock()
	defer func() { nc.Close() }()
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(nc)
	w := io.Writer(nc)
	c := &fakeConn{}
	greeting := f.greeting
	if f.greetFn != nil {
		greeting = f.greetFn(n)
	}
	io.WriteString(w, greeting+"\r\n")
	if strings.HasPrefix(greeting, "421") {
		return
	}
	for i := 0; i < 10000; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		c.n++
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		tag := ""
		if f.starttlsVerb == "STARTTLS" && strings.HasPrefix(f.greeting, "* ") { // IMAP: tag first
			fs := strings.Fields(line + " x")
			tag, verb = fs[0], strings.ToUpper(fs[1])
		}
		if f.tls != nil && f.starttlsVerb != "" && verb == f.starttlsVerb && !c.isTLS {
			rep := f.starttlsReply
			if tag != "" {
				rep = tag + " " + rep
			}
			io.WriteString(w, rep+"\r\n")
			tc := tls.Server(nc, f.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			nc, w, c.isTLS = tc, tc, true
			if !f.injectable {
				br = bufio.NewReader(tc)
			} else {
				// The bug: unread clear text stays in br and is answered
				// inside TLS; new input comes from TLS.
				br = bufio.NewReader(io.MultiReader(bufReader{br}, tc))
			}
			continue
		}
		if verb == "DATA" && strings.HasPrefix(f.greeting, "220") {
			io.WriteString(w, "354 go ahead\r\n")
			var msg strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || (f.lenientData && strings.TrimRight(l, "\r\n") == ".") {
					break
				}
				msg.WriteString(l)
			}
			f.mu.Lock()
			f.messages = append(f.messages, msg.String())
			f.mu.Unlock()
			io.WriteString(w, "250 2.0.0 queued\r\n")
			continue
		}
		rep := f.handle(c, line)
		if rep == "CLOSE" {
			return
		}
		io.WriteString(w, rep+"\r\n")
		if verb == "QUIT" || verb == "LOGOUT" {
			return
		}
	}
}

// bufReader yields only what a bufio.Reader already holds.
type bufReader struct{ br *bufio.Reader }

func (b bufReader) Read(p []byte) (int, error) {
	if b.br.Buffered() == 0 {
		return 0, io.EOF
	}
	return b.br.Read(p[:min(len(p), b.br.Buffered())])
}

// smtpHandler builds an SMTP handler: users exist, rcpt decides RCPT
// replies for other names (nil: 550 user unknown).
type smtpPeer struct {
	ehlo  []string
	users map[string]bool
	vrfy  func(c *fakeConn, arg string, known bool) string
	expn  func(c *fakeConn, arg string, known bool) string
	rcpt  func(c *fakeConn, arg string, known bool) string
}

func (p smtpPeer) handler() func(c *fakeConn, line string) string {
	return func(c *fakeConn, line string) string {
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		switch verb {
		case "EHLO":
			ls := append([]string{"mx.fake.test"}, p.ehlo...)
			var b strings.Builder
			for i, l := range ls {
				sep := "-"
				if i == len(ls)-1 {
					sep = " "
				}
				b.WriteString("250" + sep + l)
				if i < len(ls)-1 {
					b.WriteString("\r\n")
				}
			}
			return b.String()
		case "HELO", "RSET", "NOOP":
			return "250 2.0.0 Ok"
		case "MAIL":
			return "250 2.1.0 Ok"
		case "QUIT":
			return "221 2.0.0 Bye"
		case "VRFY":
			name := strings.ToLower(strings.Trim(arg, "<>"))
			if p.vrfy != nil {
				return p.vrfy(c, name, p.users[name])
			}
			return "252 2.0.0 Send some mail, I'll try my best"
		case "EXPN":
			name := strings.ToLower(strings.Trim(arg, "<>"))
			if p.expn != nil {
				return p.expn(c, name, p.users[name])
			}
			return "502 5.5.2 Error: command not recognized"
		case "RCPT":
			c.rcpts++
			name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(arg[3:]), "<"), ">"))
			if p.rcpt != nil {
				return p.rcpt(c, name, p.users[name])
			}
			if p.users[name] {
				return "250 2.1.5 Ok"
			}
			if !strings.HasSuffix(name, "@example.net") {
				return "554 5.7.1 <" + name + ">: Relay access denied"
			}
			return "550 5.1.1 <" + name + ">: Recipient address rejected: User unknown"
		}
		return "502 5.5.2 Error: command not recognized"
	}
}

// startTLSFake serves the fake f behind implicit TLS on another port and
// returns that port's address.
func startTLSFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", fakeTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(nc) }()
		}
	}()
	return l.Addr().String()
}
