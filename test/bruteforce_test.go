package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// authServer is a server with every login listener on: submission
// (STARTTLS) and submissions, IMAP and IMAPS, POP3 and POP3S.
type authServer struct {
	*server
	ports map[string]int // by listener key: "submission", "imaps", ...
}

var authListeners = []string{"submission", "submissions", "imap", "imaps", "pop3", "pop3s"}

// startAuthServer starts a server for example.test with the given users
// (password "secret-" + address), extra [limits] lines, and every login
// listener on.
func startAuthServer(t *testing.T, limits string, users ...string) *authServer {
	t.Helper()
	s := mxWithUsers(t, limits, users...)
	a := &authServer{server: s, ports: map[string]int{}}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	c := string(cfg)
	for _, key := range authListeners {
		a.ports[key] = freePort(t)
		line := key + " = []\n"
		if !strings.Contains(c, "\n"+line) {
			t.Fatalf("config has no %q line to replace:\n%s", line, c)
		}
		c = strings.Replace(c, "\n"+line, fmt.Sprintf("\n%s = [\"127.0.0.1:%d\"]\n", key, a.ports[key]), 1)
	}
	if err := os.WriteFile(s.config, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	a.ports["smtp"] = s.smtpPort
	for _, key := range authListeners {
		if !strings.Contains(s.stdout.String(), fmt.Sprintf("%s listening on 127.0.0.1:%d", key, a.ports[key])) {
			t.Fatalf("no %s listener in the server's output:\n%s", key, s.stdout.String())
		}
	}
	return a
}

// lineConn is a line-oriented client connection for SMTP, IMAP and POP3.
type lineConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialLines connects to a listener of a, with implicit TLS if tlsOn, and
// returns the connection and the server's first line.
func (a *authServer) dialLines(t *testing.T, key string, tlsOn bool) (*lineConn, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", a.ports[key])
	var nc net.Conn
	var err error
	if tlsOn {
		nc, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		nc, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", key, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &lineConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	return c, c.line()
}

// line reads one line (without CRLF); "" at EOF.
func (c *lineConn) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil && l == "" {
		return ""
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a line and returns the reply's lines up to the last one: for
// SMTP the one with a space after the code, for IMAP the tagged one, for
// POP3 the first.
func (c *lineConn) cmd(s string, last func(string) bool) []string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.nc, "%s\r\n", s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if l == "" || last(l) {
			return out
		}
	}
}

func smtpLast(l string) bool { return len(l) < 4 || l[3] == ' ' }
func pop3Last(string) bool   { return true }
func imapLast(tag string) func(string) bool {
	return func(l string) bool { return strings.HasPrefix(l, tag+" ") }
}

// closed reports whether the server has closed c.
func (c *lineConn) closed() bool {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil && !os.IsTimeout(err)
}

func saslPlain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// lastLine is the final line of a reply.
func lastLine(r []string) string { return r[len(r)-1] }

// TestAuthThrottleSharedAcrossProtocols drives the built binary over real
// sockets: no login is possible before TLS on any protocol; wrong
// passwords and unknown users get the same answer; failures on SMTP AUTH,
// IMAP and POP3 add up in one per-IP count, and when it reaches
// auth_max_failures the IP is refused everywhere, the right password
// included: 454/421 on SMTP, NO/BYE [UNAVAILABLE] on IMAP, -ERR
// [SYS/TEMP] on POP3.
func TestAuthThrottleSharedAcrossProtocols(t *testing.T) {
	a := startAuthServer(t, `auth_fail_delay = "0s"
auth_delay_after = 2
auth_delay_step = "20ms"
auth_max_delay = "100ms"
auth_max_failures = 6
auth_window = "10m"
auth_cooldown = "10m"`, "alice")
	user, pass := "alice@example.test", "secret-alice@example.test"

	// No AUTH, LOGIN or USER before TLS anywhere (these do not count).
	sub, greet := a.dialLines(t, "submission", false)
	if !strings.HasPrefix(greet, "220 ") {
		t.Fatalf("submission greeting %q", greet)
	}
	if r := sub.cmd("EHLO client.example.org", smtpLast); strings.Contains(strings.Join(r, "\n"), "AUTH") {
		t.Errorf("submission offers AUTH before STARTTLS:\n%s", strings.Join(r, "\n"))
	}
	if r := lastLine(sub.cmd("AUTH PLAIN "+saslPlain(user, pass), smtpLast)); !strings.HasPrefix(r, "5") {
		t.Errorf("AUTH before STARTTLS: %q, want a 5xx refusal", r)
	}
	imap, _ := a.dialLines(t, "imap", false)
	if r := strings.Join(imap.cmd("a CAPABILITY", imapLast("a")), "\n"); !strings.Contains(r, "LOGINDISABLED") || strings.Contains(r, "AUTH=") {
		t.Errorf("IMAP capabilities before STARTTLS:\n%s", r)
	}
	if r := lastLine(imap.cmd(fmt.Sprintf("b LOGIN %s %s", user, pass), imapLast("b"))); !strings.HasPrefix(r, "b NO") && !strings.HasPrefix(r, "b BAD") {
		t.Errorf("IMAP LOGIN before STARTTLS: %q", r)
	}
	pop, _ := a.dialLines(t, "pop3", false)
	if r := pop.cmd("USER "+user, pop3Last)[0]; !strings.HasPrefix(r, "-ERR") {
		t.Errorf("POP3 USER before STLS: %q", r)
	}
	if r := pop.cmd("AUTH PLAIN "+saslPlain(user, pass), pop3Last)[0]; !strings.HasPrefix(r, "-ERR") {
		t.Errorf("POP3 AUTH before STLS: %q", r)
	}

	// Six failures, two per protocol, unknown user and wrong password
	// answered alike; the last one reaches auth_max_failures.
	// (Each pair is new: a user and password pair failing again from the
	// same IP, on any protocol, is not counted again.)
	subs, _ := a.dialLines(t, "submissions", true)
	subs.cmd("EHLO client.example.org", smtpLast)
	wrong := lastLine(subs.cmd("AUTH PLAIN "+saslPlain(user, "guess1"), smtpLast))
	unknown := lastLine(subs.cmd("AUTH PLAIN "+saslPlain("nobody@example.test", "guess1"), smtpLast))
	if !strings.HasPrefix(wrong, "535 5.7.8 ") || wrong != unknown {
		t.Errorf("SMTP AUTH: wrong password %q, unknown user %q; want the same 535 5.7.8", wrong, unknown)
	}
	imaps, _ := a.dialLines(t, "imaps", true)
	// The same pair again first: answered alike, not counted.
	imaps.cmd(fmt.Sprintf("z LOGIN %s guess1", user), imapLast("z"))
	wrong = lastLine(imaps.cmd(fmt.Sprintf("a LOGIN %s guess2", user), imapLast("a")))
	unknown = lastLine(imaps.cmd("b LOGIN nobody@example.test guess2", imapLast("b")))
	if !strings.HasPrefix(wrong, "a NO [AUTHENTICATIONFAILED] ") || wrong[1:] != unknown[1:] {
		t.Errorf("IMAP LOGIN: wrong password %q, unknown user %q; want the same NO [AUTHENTICATIONFAILED]", wrong, unknown)
	}
	pops, _ := a.dialLines(t, "pop3s", true)
	wrong = pops.cmd("AUTH PLAIN "+saslPlain(user, "guess3"), pop3Last)[0]
	pops.cmd("USER nobody@example.test", pop3Last)
	unknown = pops.cmd("PASS guess3", pop3Last)[0]
	if !strings.HasPrefix(wrong, "-ERR [AUTH] ") || wrong != unknown {
		t.Errorf("POP3: wrong password %q, unknown user %q; want the same -ERR [AUTH]", wrong, unknown)
	}

	// The IP is now refused on every protocol, the right password too.
	if r := lastLine(subs.cmd("AUTH PLAIN "+saslPlain(user, pass), smtpLast)); !strings.HasPrefix(r, "454 4.7.0 ") {
		t.Errorf("SMTP AUTH with the right password in the cool-down: %q, want 454 4.7.0", r)
	}
	if r := lastLine(imaps.cmd(fmt.Sprintf("c LOGIN %s %s", user, pass), imapLast("c"))); !strings.HasPrefix(r, "c NO [UNAVAILABLE] ") {
		t.Errorf("IMAP LOGIN with the right password in the cool-down: %q, want NO [UNAVAILABLE]", r)
	}
	if r := pops.cmd("AUTH PLAIN "+saslPlain(user, pass), pop3Last)[0]; !strings.HasPrefix(r, "-ERR [SYS/TEMP] ") {
		t.Errorf("POP3 AUTH with the right password in the cool-down: %q, want -ERR [SYS/TEMP]", r)
	}
	for _, l := range []struct {
		key   string
		tls   bool
		greet string
	}{
		{"submission", false, "421 4.7.0 "}, {"submissions", true, "421 4.7.0 "},
		{"imap", false, "* BYE [UNAVAILABLE] "}, {"imaps", true, "* BYE [UNAVAILABLE] "},
		{"pop3", false, "-ERR [SYS/TEMP] "}, {"pop3s", true, "-ERR [SYS/TEMP] "},
	} {
		c, g := a.dialLines(t, l.key, l.tls)
		if !strings.HasPrefix(g, l.greet) {
			t.Errorf("%s in the cool-down greets %q, want %q...", l.key, g, l.greet)
		}
		if !c.closed() {
			t.Errorf("%s in the cool-down: connection left open", l.key)
		}
	}
	// The MX is not a login service: it still serves the IP.
	mx, g := a.dialLines(t, "smtp", false)
	if !strings.HasPrefix(g, "220 ") {
		t.Errorf("MX greeting in the cool-down: %q", g)
	}
	mx.cmd("QUIT", smtpLast)
	if logs := a.stderr.String(); !strings.Contains(logs, "too many failed logins: refusing this IP for the cool-down") {
		t.Errorf("no log line for the start of the cool-down:\n%s", tail(logs, 30))
	}
}

// TestAuthThrottleParallelGuesses: twelve connections guessing at once
// from one IP (over POP3S) get exactly auth_max_failures password checks
// between them: logins of one IP run one at a time, so none slips past
// the count while others are being checked; the rest are refused.
func TestAuthThrottleParallelGuesses(t *testing.T) {
	a := startAuthServer(t, `auth_fail_delay = "0s"
auth_delay_after = 0
auth_max_failures = 5
auth_window = "10m"
auth_cooldown = "10m"`, "alice")
	const n = 12
	answers := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp",
				fmt.Sprintf("127.0.0.1:%d", a.ports["pop3s"]), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				answers <- "dial: " + err.Error()
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(nc)
			greet, _ := br.ReadString('\n')
			if !strings.HasPrefix(greet, "+OK") {
				answers <- "greeting " + strings.TrimSpace(greet)
				return
			}
			fmt.Fprintf(nc, "AUTH PLAIN %s\r\n", saslPlain("alice@example.test", fmt.Sprint("parallel-guess", i)))
			l, _ := br.ReadString('\n')
			answers <- strings.TrimSpace(l)
		}()
	}
	checked, refused := 0, 0
	for i := 0; i < n; i++ {
		switch l := <-answers; {
		case strings.HasPrefix(l, "-ERR [AUTH] "):
			checked++
		case strings.Contains(l, "-ERR [SYS/TEMP] Too many failed logins"):
			refused++
		default:
			t.Errorf("unexpected answer %q", l)
		}
	}
	if checked != 5 || refused != n-5 {
		t.Errorf("%d passwords checked and %d refused, want 5 and %d", checked, refused, n-5)
	}
}
