package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapServer is a mailServer (see pop3_test.go) with the IMAP (STARTTLS)
// and IMAPS listeners on; its POP3 ports are left unused.
type imapServer struct {
	*mailServer
	imapPort int
}

// startIMAPServer starts a server for example.test with the given users
// (password "secret-" + address) and the IMAP and IMAPS listeners on.
func startIMAPServer(t *testing.T, users ...string) *imapServer {
	t.Helper()
	return startIMAPServerLimits(t, "", users...)
}

// startIMAPServerLimits is startIMAPServer with extra [limits] lines.
func startIMAPServerLimits(t *testing.T, limits string, users ...string) *imapServer {
	t.Helper()
	s := mxWithUsers(t, limits, users...)
	m := &imapServer{mailServer: &mailServer{server: s, imapsPort: freePort(t)}, imapPort: freePort(t)}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	c := string(cfg)
	for key, port := range map[string]int{"imap": m.imapPort, "imaps": m.imapsPort} {
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
	for key, port := range map[string]int{"imap": m.imapPort, "imaps": m.imapsPort} {
		if !strings.Contains(s.stdout.String(), fmt.Sprintf("%s listening on 127.0.0.1:%d", key, port)) {
			t.Fatalf("no %s listener in the server's output:\n%s", key, s.stdout.String())
		}
	}
	return m
}

// imapsClient logs user in over IMAPS with go-imap's client.
func (m *imapServer) imapsClient(t *testing.T, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", m.imapsPort), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, "secret-"+user).Wait(); err != nil {
		t.Fatalf("IMAP login: %v", err)
	}
	return c
}

// smtpDeliver sends one message with the given subject to rcpt over SMTP
// (no STARTTLS: the self-signed certificate does not name 127.0.0.1).
func (m *imapServer) smtpDeliver(t *testing.T, rcpt, subject string) {
	t.Helper()
	c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", m.smtpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := fmt.Sprintf("From: bob@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\n%s\r\n", rcpt, subject, subject)
	err = c.Hello("client.example.org")
	if err == nil {
		err = c.Mail("bob@example.org")
	}
	if err == nil {
		err = c.Rcpt(rcpt)
	}
	if err == nil {
		w, derr := c.Data()
		if err = derr; err == nil {
			if _, err = w.Write([]byte(msg)); err == nil {
				err = w.Close()
			}
		}
	}
	if err != nil {
		t.Fatalf("SMTP delivery of %q: %v", subject, err)
	}
	c.Quit()
}

// imapClientResult is what py/imap_client.py prints.
type imapClientResult struct {
	OK     bool     `json:"ok"`
	Steps  []string `json:"steps"`
	IdleMS int      `json:"idle_ms"`
	Error  string   `json:"error"`
}

// TestIMAPImaplib drives the built binary with Python's imaplib: STARTTLS,
// LOGIN, LIST, SELECT, FETCH, SEARCH, STORE, COPY, MOVE, APPEND, EXPUNGE,
// and IDLE that sees a message delivered with smtplib within a second.
func TestIMAPImaplib(t *testing.T) {
	python(t)
	m := startIMAPServer(t, "alice")
	const user = "alice@example.test"
	var r imapClientResult
	runPython(t, &r, "", "imap_client.py", "127.0.0.1", itoa(m.imapPort), itoa(m.imapsPort), itoa(m.smtpPort), user, "secret-"+user)
	if !r.OK {
		t.Fatalf("imap_client.py failed after steps %q:\n%s", r.Steps, r.Error)
	}
	t.Logf("steps %q; IDLE saw the SMTP delivery after %d ms", r.Steps, r.IdleMS)
	// What the script left behind, as the store sees it.
	for mb, want := range map[string]int{"INBOX": 1, "Archive": 1, "Trash": 1, "Drafts": 1} {
		if n := m.mailboxCount(user, mb); n != want {
			t.Errorf("%s has %d messages, want %d", mb, n, want)
		}
	}
}

// mbsyncPath returns the path of isync's mbsync.
func mbsyncPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mbsync")
	if err != nil {
		needTool(t, "mbsync", "install it with apt-get install -y isync")
	}
	return p
}

// maildirUIDs maps UID (from mbsync's ",U=n" file names) to the file path
// for every message of a Maildir folder.
func maildirUIDs(t *testing.T, dir string) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	re := regexp.MustCompile(`,U=(\d+)`)
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			sm := re.FindStringSubmatch(e.Name())
			if sm == nil {
				t.Fatalf("maildir file without UID: %s", e.Name())
			}
			var uid uint32
			fmt.Sscan(sm[1], &uid)
			out[uid] = filepath.Join(dir, sub, e.Name())
		}
	}
	return out
}

// addMaildirFlag adds a flag letter to a Maildir file name, moving it to cur.
func addMaildirFlag(t *testing.T, path string, flag byte) {
	t.Helper()
	dir := filepath.Dir(filepath.Dir(path))
	base, info, _ := strings.Cut(filepath.Base(path), ":2,")
	flags := []byte(info + string(flag))
	sort.Slice(flags, func(i, j int) bool { return flags[i] < flags[j] })
	if err := os.Rename(path, filepath.Join(dir, "cur", base+":2,"+string(flags))); err != nil {
		t.Fatal(err)
	}
}

// serverINBOX returns the flags of every message in INBOX by UID.
func (m *imapServer) serverINBOX(t *testing.T, user string) map[uint32][]imap.Flag {
	t.Helper()
	c := m.imapsClient(t, user)
	defer func() { c.Logout().Wait() }()
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("EXAMINE INBOX: %v", err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:*: %v", err)
	}
	out := map[uint32][]imap.Flag{}
	for _, msg := range msgs {
		out[uint32(msg.UID)] = msg.Flags
	}
	return out
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// TestIMAPMbsync syncs a few hundred messages of the built binary with
// isync's mbsync into a Maildir over IMAPS, changes both sides (a flag and
// a deletion in the Maildir; a delivery over SMTP, a flag and an expunge
// on the server), and checks that a second sync converges and a third
// changes nothing.
func TestIMAPMbsync(t *testing.T) {
	mbsync := mbsyncPath(t)
	m := startIMAPServer(t, "alice")
	const user, n = "alice@example.test", 300
	m.sendMessages(t, user, n, 300)

	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail")
	if err := os.MkdirAll(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The server made a self-signed certificate; mbsync trusts exactly it.
	rc := fmt.Sprintf(`IMAPAccount postern
Host 127.0.0.1
Port %d
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN

IMAPStore far
Account postern

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, m.imapsPort, user, "secret-"+user, filepath.Join(m.dataDir, "tls", "cert.pem"), maildir, maildir)
	rcFile := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func(round int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*toolTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, mbsync, "-c", rcFile, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync round %d: %v\n%s", round, err, tail(string(out), 40))
		}
	}

	sync(1)
	inbox := filepath.Join(maildir, "INBOX")
	files := maildirUIDs(t, inbox)
	if len(files) != n {
		t.Fatalf("first sync: %d messages in the Maildir, want %d", len(files), n)
	}
	for _, name := range []string{"Drafts", "Sent", "Trash", "Junk", "Archive"} {
		if _, err := os.Stat(filepath.Join(maildir, name)); err != nil {
			t.Errorf("folder %s not synced: %v", name, err)
		}
	}
	body, err := os.ReadFile(files[7])
	if err != nil || !strings.Contains(string(body), "X-Seq: 7\r\n") && !strings.Contains(string(body), "X-Seq: 7\n") {
		t.Errorf("Maildir message of UID 7 (err %v):\n%.400s", err, body)
	}

	// Near side: flag UID 10, delete UID 20.
	addMaildirFlag(t, files[10], 'F')
	if err := os.Remove(files[20]); err != nil {
		t.Fatal(err)
	}
	// Far side: a new delivery, \Seen on UID 30, UID 40 expunged.
	m.smtpDeliver(t, user, "late arrival")
	c := m.imapsClient(t, user)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(30), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatalf("UID STORE 30: %v", err)
	}
	if err := c.Store(imap.UIDSetNum(40), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("UID STORE 40: %v", err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(40)).Close(); err != nil {
		t.Fatalf("UID EXPUNGE 40: %v", err)
	}
	c.Logout().Wait()

	sync(2)
	const want = n - 2 + 1
	srv := m.serverINBOX(t, user)
	if len(srv) != want {
		t.Errorf("server after the second sync: %d messages, want %d", len(srv), want)
	}
	if !hasFlag(srv[10], imap.FlagFlagged) {
		t.Errorf("\\Flagged set in the Maildir on UID 10 did not reach the server: %v", srv[10])
	}
	if _, ok := srv[20]; ok {
		t.Error("UID 20 deleted in the Maildir is still on the server")
	}
	files = maildirUIDs(t, inbox)
	if len(files) != want {
		t.Errorf("Maildir after the second sync: %d messages, want %d", len(files), want)
	}
	if _, info, _ := strings.Cut(filepath.Base(files[30]), ":2,"); !strings.Contains(info, "S") {
		t.Errorf("\\Seen of UID 30 not synced to the Maildir: %s", files[30])
	}
	if _, ok := files[40]; ok {
		t.Error("UID 40 expunged on the server is still in the Maildir")
	}
	if _, ok := files[n+1]; !ok {
		t.Errorf("the new delivery (UID %d) did not reach the Maildir", n+1)
	}
	for uid := range srv {
		if _, ok := files[uid]; !ok {
			t.Errorf("UID %d is on the server but not in the Maildir", uid)
		}
	}

	// A third sync finds both sides equal and changes nothing.
	sync(3)
	if again := maildirUIDs(t, inbox); len(again) != want {
		t.Errorf("third sync: %d messages in the Maildir, want %d", len(again), want)
	}
	if again := m.serverINBOX(t, user); len(again) != want {
		t.Errorf("third sync: %d messages on the server, want %d", len(again), want)
	}
}

// TestIMAPLimitsFromConfig checks that [limits] imap_max_literal_size and
// imap_max_line_length reach the IMAP server of the built binary: a
// literal over the limit gets NO [TOOBIG] instead of the continuation
// request, and a line over the limit gets BAD [TOOBIG] and the connection
// is closed.
func TestIMAPLimitsFromConfig(t *testing.T) {
	m := startIMAPServerLimits(t, "imap_max_line_length = 8192\nimap_max_literal_size = \"4KiB\"", "alice")
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.imapsPort), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	line := func() string {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, l)
		}
		return strings.TrimRight(l, "\r\n")
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(conn, s+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	line() // greeting
	const user = "alice@example.test"
	send(fmt.Sprintf("a1 LOGIN %s %s", user, "secret-"+user))
	for l := line(); !strings.HasPrefix(l, "a1 "); l = line() {
	}
	send("a2 SELECT {4097}")
	if l := line(); !strings.HasPrefix(l, "a2 NO [TOOBIG]") {
		t.Fatalf("literal of 4097 bytes: %q, want a2 NO [TOOBIG]", l)
	}
	send("a3 SELECT {5}")
	if l := line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("literal of 5 bytes: %q, want +", l)
	}
	send("INBOX")
	for l := line(); !strings.HasPrefix(l, "a3 "); l = line() {
	}
	send("a4 SEARCH SUBJECT " + strings.Repeat("x", 8192))
	if l := line(); !strings.HasPrefix(l, "a4 BAD [TOOBIG]") {
		t.Fatalf("line over 8192 bytes: %q, want a4 BAD [TOOBIG]", l)
	}
	if l := line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after BAD [TOOBIG]: %v", err)
	}
}
