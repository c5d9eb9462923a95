package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// mailServer is a server with POP3 (STLS), POP3S and IMAPS listeners.
type mailServer struct {
	*server
	pop3Port, pop3sPort, imapsPort int
}

// startMailServer starts a server for example.test with the given users
// (password "secret-" + address) and the POP3 and IMAPS listeners on.
func startMailServer(t *testing.T, users ...string) *mailServer {
	t.Helper()
	s := mxWithUsers(t, "", users...)
	m := &mailServer{server: s, pop3Port: freePort(t), pop3sPort: freePort(t), imapsPort: freePort(t)}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	c := string(cfg)
	for key, port := range map[string]int{"pop3": m.pop3Port, "pop3s": m.pop3sPort, "imaps": m.imapsPort} {
		line := key + " = []\n"
		if !strings.Contains(c, "\n"+line) {
			t.Fatalf("config has no %q line to replace:\n%s", line, c)
		}
		c = strings.Replace(c, "\n"+line, fmt.Sprintf("\n%s = [\"127.0.0.1:%d\"]\n", key, port), 1)
	}
	if err := os.WriteFile(s.config, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	if !strings.Contains(s.stdout.String(), fmt.Sprintf("pop3 listening on 127.0.0.1:%d", m.pop3Port)) {
		t.Fatalf("no pop3 listener in the server's output:\n%s", s.stdout.String())
	}
	return m
}

// sendMessages delivers n messages to rcpt over SMTP in one session. Each
// has a header X-Seq: i and a body line that starts with a dot.
func (m *mailServer) sendMessages(t *testing.T, rcpt string, n, bodySize int) {
	t.Helper()
	c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", m.smtpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	filler := strings.Repeat(strings.Repeat("abcdefghij", 7)+"\r\n", max(bodySize/72, 1))
	for i := 1; i <= n; i++ {
		if err := c.Mail("bob@example.org"); err != nil {
			t.Fatalf("message %d: MAIL: %v", i, err)
		}
		if err := c.Rcpt(rcpt); err != nil {
			t.Fatalf("message %d: RCPT: %v", i, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatalf("message %d: DATA: %v", i, err)
		}
		fmt.Fprintf(w, "From: bob@example.org\r\nTo: %s\r\nSubject: Message %d\r\nMessage-ID: <%d@pop3.e2e.test>\r\nX-Seq: %d\r\n\r\n"+
			"Hello %d.\r\n.a line that starts with a dot\r\n%s", rcpt, i, i, i, i, filler)
		if err := w.Close(); err != nil {
			t.Fatalf("message %d: end of data: %v", i, err)
		}
	}
	c.Quit()
}

// imapCount returns the number of messages in INBOX as an IMAP client sees it.
func (m *mailServer) imapCount(t *testing.T, user string) uint32 {
	t.Helper()
	c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", m.imapsPort), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, "secret-"+user).Wait(); err != nil {
		t.Fatalf("IMAP login: %v", err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil {
		t.Fatalf("IMAP STATUS INBOX: %v", err)
	}
	c.Logout().Wait()
	return *st.NumMessages
}

// poplibResult is what py/pop3_client.py prints.
type poplibResult struct {
	Welcome      string   `json:"welcome"`
	CapaPlain    []string `json:"capa_plain"`
	UserBeforeTL string   `json:"user_before_tls"`
	CapaTLS      []string `json:"capa_tls"`
	Pass         string   `json:"pass"`
	Stat         []int    `json:"stat"`
	List         []string `json:"list"`
	UIDL         []string `json:"uidl"`
	Top0         []string `json:"top0"`
	Messages     []string `json:"messages"`
	Dele         string   `json:"dele"`
	Quit         string   `json:"quit"`
	StatAfter    []int    `json:"stat_after"`
	UIDLAfter    []string `json:"uidl_after"`
}

// TestPOP3Poplib drives POP3 with Python's poplib: STLS, USER/PASS, STAT,
// LIST, UIDL, TOP, RETR, DELE, QUIT, then a POP3S session.
func TestPOP3Poplib(t *testing.T) {
	python(t)
	m := startMailServer(t, "alice")
	const user = "alice@example.test"
	m.sendMessages(t, user, 3, 500)

	var r poplibResult
	runPython(t, &r, "", "pop3_client.py", "127.0.0.1", itoa(m.pop3Port), itoa(m.pop3sPort), user, "secret-"+user)
	if !slices.Contains(r.CapaPlain, "STLS") || slices.Contains(r.CapaPlain, "USER") || slices.Contains(r.CapaPlain, "SASL") {
		t.Errorf("CAPA before TLS = %q, want STLS and no USER or SASL", r.CapaPlain)
	}
	if !strings.HasPrefix(r.UserBeforeTL, "-ERR [AUTH]") {
		t.Errorf("USER before STLS: %q, want -ERR [AUTH]", r.UserBeforeTL)
	}
	for _, c := range []string{"USER", "SASL", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"} {
		if !slices.Contains(r.CapaTLS, c) {
			t.Errorf("CAPA after STLS = %q, missing %s", r.CapaTLS, c)
		}
	}
	if slices.Contains(r.CapaTLS, "IMPLEMENTATION") || slices.Contains(r.CapaTLS, "STLS") {
		t.Errorf("CAPA after STLS = %q", r.CapaTLS)
	}
	if !strings.HasPrefix(r.Pass, "+OK") || len(r.Stat) != 2 || r.Stat[0] != 3 || len(r.List) != 3 || len(r.UIDL) != 3 {
		t.Fatalf("after login: pass %q stat %v list %q uidl %q", r.Pass, r.Stat, r.List, r.UIDL)
	}
	sum := 0
	for _, l := range r.List {
		var n, size int
		fmt.Sscanf(l, "%d %d", &n, &size)
		sum += size
	}
	if sum != r.Stat[1] {
		t.Errorf("LIST sizes add up to %d, STAT says %d", sum, r.Stat[1])
	}
	if len(r.Top0) == 0 || r.Top0[len(r.Top0)-1] != "" || !slices.Contains(r.Top0, "Subject: Message 1") || slices.Contains(r.Top0, "Hello 1.") {
		t.Errorf("TOP 1 0 = %q, want the header and the blank line only", r.Top0)
	}
	for i, msg := range r.Messages {
		if !strings.Contains(msg, fmt.Sprintf("X-Seq: %d\r\n", i+1)) || !strings.Contains(msg, "\r\n.a line that starts with a dot\r\n") {
			t.Errorf("RETR %d:\n%.400s", i+1, msg)
		}
		var n, size int
		fmt.Sscanf(r.List[i], "%d %d", &n, &size)
		if got := len(msg) + 2; got != size { // poplib drops the last CRLF
			t.Errorf("RETR %d has %d octets, LIST said %d", i+1, got, size)
		}
	}
	if !strings.HasPrefix(r.Dele, "+OK") || !strings.HasPrefix(r.Quit, "+OK") {
		t.Errorf("DELE %q QUIT %q", r.Dele, r.Quit)
	}
	if len(r.StatAfter) != 2 || r.StatAfter[0] != 2 || !slices.Equal(r.UIDLAfter, []string{"1 " + strings.Fields(r.UIDL[1])[1], "2 " + strings.Fields(r.UIDL[2])[1]}) {
		t.Errorf("POP3S after DELE 1: stat %v uidl %q (before %q)", r.StatAfter, r.UIDLAfter, r.UIDL)
	}
	if n := m.mailboxCount(user, "INBOX"); n != 2 {
		t.Errorf("INBOX has %d messages, want 2", n)
	}
}

// fetchmailPath returns the path of fetchmail.
func fetchmailPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("fetchmail")
	if err != nil {
		needTool(t, "fetchmail", "install it with apt-get install -y fetchmail")
	}
	return p
}

// TestPOP3Fetchmail downloads 100 messages with Debian's fetchmail over
// STLS, without --keep; afterwards the INBOX is empty, for the store and
// for an IMAP client, and every message arrived once and whole.
func TestPOP3Fetchmail(t *testing.T) {
	fm := fetchmailPath(t)
	m := startMailServer(t, "alice")
	const user, n = "alice@example.test", 100
	m.sendMessages(t, user, n, 2000)
	if got := m.imapCount(t, user); got != n {
		t.Fatalf("IMAP sees %d messages before fetchmail, want %d", got, n)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "mbox")
	rc := filepath.Join(dir, "fetchmailrc")
	conf := fmt.Sprintf("set no syslog\n"+
		"poll 127.0.0.1 service %d protocol pop3 timeout 30\n"+
		"  user %q password %q is localuser here\n"+
		"  sslproto 'tls1.2+' no sslcertck\n"+
		"  mda \"/bin/sh -c 'cat >> %s; echo ==END== >> %s'\"\n", m.pop3Port, user, "secret-"+user, out, out)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fm, "-f", rc, "--nodetach", "--pidfile", filepath.Join(dir, "pid"), "-v")
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	err := cmd.Run()
	t.Logf("fetchmail took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, tail(log.String(), 60))
	}
	if !strings.Contains(log.String(), "STLS") {
		t.Errorf("fetchmail did not use STLS:\n%s", tail(log.String(), 40))
	}

	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	msgs := strings.Split(strings.TrimSuffix(string(got), "==END==\n"), "==END==\n")
	if len(msgs) != n {
		t.Fatalf("fetchmail delivered %d messages, want %d", len(msgs), n)
	}
	seqRe := regexp.MustCompile(`(?m)^X-Seq: (\d+)\r?$`)
	seen := map[string]bool{}
	for _, msg := range msgs {
		sm := seqRe.FindStringSubmatch(msg)
		if sm == nil || seen[sm[1]] {
			t.Fatalf("message without a unique X-Seq:\n%.300s", msg)
		}
		seen[sm[1]] = true
		if !strings.Contains(msg, "\n.a line that starts with a dot") || strings.Contains(msg, "\n..a line") {
			t.Fatalf("message %s: dot line not restored:\n%.600s", sm[1], msg)
		}
	}
	if c := m.mailboxCount(user, "INBOX"); c != 0 {
		t.Errorf("store: INBOX has %d messages after fetchmail, want 0", c)
	}
	if c := m.imapCount(t, user); c != 0 {
		t.Errorf("IMAP: INBOX has %d messages after fetchmail, want 0", c)
	}
}
