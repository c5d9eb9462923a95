package imapd

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The RFC conformance suite: dialogues taken from RFC 9051/3501 examples
// and the edge cases clients depend on, each run against Postern and, when
// it can run here (dovecot-imapd installed, root), against Dovecot from
// Debian started on loopback. A check Postern fails fails the test; a
// check Dovecot fails is logged, so that where the two differ the output
// says which one departs from the RFC.

// rfcServer is a server the suite talks to over implicit TLS.
type rfcServer struct {
	name, addr, user, pass string
}

// rfcRun is one case against one server: a fresh mailbox holding the
// case's messages, selected on r.
type rfcRun struct {
	t     *testing.T
	srv   rfcServer
	r     *raw
	mbox  string
	fails []string
}

func (c *rfcRun) check(ok bool, format string, args ...any) {
	if !ok {
		c.fails = append(c.fails, fmt.Sprintf(format, args...))
	}
}

// dial opens another logged-in connection with the case's mailbox selected.
func (c *rfcRun) dial() *raw {
	r := dialRaw(c.t, c.srv.addr)
	r.ok("LOGIN %q %q", c.srv.user, c.srv.pass)
	r.ok("SELECT %q", c.mbox)
	return r
}

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	conn, err := tlsDial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &raw{t: t, conn: conn, br: bufio.NewReader(conn)}
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return r
}

var rfcMessages = []string{
	"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: first\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nfirst body\r\n",
	"From: bob@example.org\r\nTo: Ann <ann@example.org>\r\nSubject: second\r\nDate: Tue, 03 Mar 2026 10:00:00 +0000\r\n\r\nsecond body, caf\xc3\xa9\r\n",
	"From: carol@example.org\r\nTo: ann@example.org\r\nSubject: third\r\nDate: Wed, 04 Mar 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthird body\r\n",
}

var rfcCases = []struct {
	name, ref string
	run       func(c *rfcRun)
}{
	{"uid-range-star-above-last", "RFC 9051 6.4.8: 559:* includes the last UID even if 559 is higher", func(c *rfcRun) {
		u := c.r.ok("UID FETCH 100:* (UID)")
		c.check(len(u) == 1 && has(u, "* 3 FETCH (UID 3)"), "UID FETCH 100:* gave %q", u)
	}},
	{"seq-star", "RFC 9051 9 seq-number: * is the last message", func(c *rfcRun) {
		u := c.r.ok("FETCH * (UID)")
		c.check(len(u) == 1 && has(u, "* 3 FETCH (UID 3)"), "FETCH * gave %q", u)
		u = c.r.ok("SEARCH 2:*")
		c.check(has(u, "* SEARCH 2 3"), "SEARCH 2:* gave %q", u)
	}},
	{"seq-out-of-range", "RFC 9051 9: a sequence number above the last is an error", func(c *rfcRun) {
		_, tagged := c.r.cmd("FETCH 4 (UID)")
		c.check(strings.HasPrefix(tagged, "BAD") || strings.HasPrefix(tagged, "NO"), "FETCH 4 of 3 answered %q", tagged)
	}},
	{"partial-edges", "RFC 9051 6.4.5: <origin.size> partials; past the end is empty", func(c *rfcRun) {
		size := len(rfcMessages[0])
		u := c.r.ok("FETCH 1 (BODY.PEEK[]<0.4>)")
		c.check(has(u, "BODY[]<0> {4}\r\nFrom"), "<0.4>: %q", u)
		u = c.r.ok("FETCH 1 (BODY.PEEK[]<%d.10>)", size-2)
		c.check(has(u, fmt.Sprintf("BODY[]<%d> {2}\r\n\r\n", size-2)), "last 2 octets: %q", u)
		u = c.r.ok("FETCH 1 (BODY.PEEK[]<%d.10>)", size+5)
		c.check(has(u, fmt.Sprintf("BODY[]<%d>", size+5)) && (has(u, `""`) || has(u, "{0}")), "past the end: %q", u)
	}},
	{"peek-keeps-unseen", "RFC 9051 6.4.5: BODY.PEEK does not set \\Seen, BODY does", func(c *rfcRun) {
		u := c.r.ok("FETCH 1 (BODY.PEEK[TEXT] FLAGS)")
		c.check(!has(u, `\Seen`), "PEEK: %q", u)
		u = c.r.ok("FETCH 1 (BODY[TEXT])")
		c.check(has(u, `\Seen`), "BODY[TEXT] did not report \\Seen: %q", u)
	}},
	{"store-silent-and-uid", "RFC 9051 6.4.6, 6.4.9: .SILENT answers nothing; UID STORE answers with UID", func(c *rfcRun) {
		u := c.r.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
		c.check(!has(u, "FETCH"), ".SILENT: %q", u)
		u = c.r.ok("UID STORE 2 +FLAGS (\\Answered)")
		c.check(has(u, "* 2 FETCH (", "UID 2", `\Answered`), "UID STORE: %q", u)
	}},
	{"search-charset-utf8", "RFC 9051 6.4.4: CHARSET UTF-8 with a literal", func(c *rfcRun) {
		u := c.r.ok("SEARCH CHARSET UTF-8 BODY {5+}\r\ncaf\xc3\xa9")
		c.check(has(u, "* SEARCH 2"), "SEARCH café: %q", u)
	}},
	{"search-header-address", "RFC 9051 6.4.4: FROM matches the display name and address", func(c *rfcRun) {
		u := c.r.ok("SEARCH FROM ann")
		c.check(has(u, "* SEARCH 1") && !has(u, " 2"), "FROM ann: %q", u)
		u = c.r.ok("SEARCH TO \"Ann\" NOT FROM ann")
		c.check(has(u, "* SEARCH 2 3"), "TO Ann NOT FROM ann: %q", u)
	}},
	{"search-sent-dates", "RFC 9051 6.4.4: SENTBEFORE/SENTON/SENTSINCE compare Date: days", func(c *rfcRun) {
		u := c.r.ok("SEARCH SENTON 3-Mar-2026")
		c.check(has(u, "* SEARCH 2"), "SENTON: %q", u)
		u = c.r.ok("SEARCH SENTSINCE 3-Mar-2026 SENTBEFORE 4-Mar-2026")
		c.check(has(u, "* SEARCH 2") && !has(u, "3"), "range: %q", u)
	}},
	{"expunge-other-session", "RFC 9051 7.5.1: no EXPUNGE during FETCH/STORE/SEARCH; numbers stay valid", func(c *rfcRun) {
		b := c.dial()
		b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
		b.ok("EXPUNGE")
		u := c.r.ok("FETCH 2 (UID)")
		c.check(!has(u, "EXPUNGE") && has(u, "* 2 FETCH (UID 2)"), "FETCH after expunge elsewhere: %q", u)
		u = c.r.ok("NOOP")
		c.check(has(u, "* 1 EXPUNGE"), "NOOP: %q", u)
		u = c.r.ok("FETCH 1 (UID)")
		c.check(has(u, "* 1 FETCH (UID 2)"), "renumbered: %q", u)
	}},
	{"copy-into-selected", "RFC 9051 6.4.7: COPY into the selected mailbox gives new UIDs and EXISTS", func(c *rfcRun) {
		u, tagged := c.r.cmd("COPY 1 %q", c.mbox)
		c.check(strings.HasPrefix(tagged, "OK") && (has(u, "* 4 EXISTS") || has(c.r.ok("NOOP"), "* 4 EXISTS")), "COPY: %q %q", u, tagged)
		u = c.r.ok("UID SEARCH ALL")
		c.check(has(u, "* SEARCH 1 2 3 4"), "UIDs: %q", u)
	}},
	{"examine-read-only", "RFC 9051 6.3.3: EXAMINE is read-only; FETCH BODY does not set \\Seen", func(c *rfcRun) {
		c.r.ok("CLOSE")
		u, tagged := c.r.cmd("EXAMINE %q", c.mbox)
		c.check(strings.HasPrefix(tagged, "OK [READ-ONLY]"), "EXAMINE: %q", tagged)
		_ = u
		u = c.r.ok("FETCH 1 (BODY[TEXT])")
		c.check(!has(u, `\Seen`), "FETCH in EXAMINE set \\Seen: %q", u)
		_, tagged = c.r.cmd("STORE 1 +FLAGS (\\Deleted)")
		c.check(strings.HasPrefix(tagged, "NO") || strings.HasPrefix(tagged, "BAD"), "STORE in EXAMINE: %q", tagged)
	}},
	{"append-literal-plus", "RFC 7888: non-synchronizing literal in APPEND; APPENDUID", func(c *rfcRun) {
		msg := "Subject: lit\r\n\r\nx\r\n"
		u, tagged := c.r.cmd("APPEND %q (\\Seen) {%d+}\r\n%s", c.mbox, len(msg), msg)
		c.check(strings.HasPrefix(tagged, "OK [APPENDUID "), "APPEND: %q %q", u, tagged)
	}},
	{"list-hierarchy", "RFC 9051 6.3.9: LIST \"\" \"\" gives the delimiter; % stops at it", func(c *rfcRun) {
		u := c.r.ok(`LIST "" ""`)
		c.check(has(u, `\Noselect`, `"/"`), "root: %q", u)
		c.r.ok("CREATE %q", c.mbox+"/child/grandchild")
		u = c.r.ok(`LIST "" %q`, c.mbox+"/%")
		c.check(has(u, c.mbox+"/child") && !has(u, "grandchild"), "%%: %q", u)
		c.check(has(u, `\HasChildren`), "child has children: %q", u)
	}},
	{"status-counts", "RFC 9051 6.3.11: STATUS of the selected mailbox counts right", func(c *rfcRun) {
		c.r.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
		u := c.r.ok("STATUS %q (MESSAGES UNSEEN UIDNEXT)", c.mbox)
		c.check(has(u, "MESSAGES 3", "UNSEEN 2", "UIDNEXT 4"), "STATUS: %q", u)
	}},
}

func runRFCSuite(t *testing.T, srv rfcServer, reference bool) {
	for i, tc := range rfcCases {
		t.Run(srv.name+"/"+tc.name, func(t *testing.T) {
			r := dialRaw(t, srv.addr)
			r.ok("LOGIN %q %q", srv.user, srv.pass)
			mbox := fmt.Sprintf("rfc%d-%d", i, time.Now().UnixNano()%1e6)
			r.ok("CREATE %q", mbox)
			for _, m := range rfcMessages {
				r.ok("APPEND %q {%d+}\r\n%s", mbox, len(m), m)
			}
			r.ok("SELECT %q", mbox)
			c := &rfcRun{t: t, srv: srv, r: r, mbox: mbox}
			tc.run(c)
			for _, f := range c.fails {
				if reference {
					t.Logf("%s differs from %s: %s", srv.name, tc.ref, f)
				} else {
					t.Errorf("%s: %s", tc.ref, f)
				}
			}
		})
	}
}

func TestRFCConformance(t *testing.T) {
	e := newEnv(t)
	runRFCSuite(t, rfcServer{name: "postern", addr: e.tlsAddr, user: testUser, pass: testPass}, false)
	if dove, ok := startDovecot(t); ok {
		runRFCSuite(t, dove, true)
	} else {
		t.Log("Dovecot's IMAP not available here (dovecot-imapd, root): Postern only")
	}
}

// startDovecot runs Debian's Dovecot on a loopback port with one user in a
// throw-away Maildir; false if it cannot run here.
func startDovecot(t *testing.T) (rfcServer, bool) {
	dovecot, err := exec.LookPath("dovecot")
	if err != nil {
		dovecot = "/usr/sbin/dovecot"
	}
	if _, err := os.Stat(dovecot); err != nil {
		return rfcServer{}, false
	}
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil || os.Getuid() != 0 {
		return rfcServer{}, false
	}
	dir, err := os.MkdirTemp("/tmp", "postern-rfc-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	os.MkdirAll(filepath.Join(dir, "mail"), 0o755)
	cert := selfSigned(t)
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	files := map[string][]byte{
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"passwd":   []byte(testUser + ":{PLAIN}" + testPass + "::::\n"),
		"dovecot.conf": []byte(fmt.Sprintf(`instance_name = postern-rfc
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:%[1]s/mail/%%n
first_valid_uid = 1
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
  default_fields = uid=65534 gid=65534 home=%[1]s/mail/%%n
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = %[2]s
    ssl = yes
  }
}
`, dir, port)),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec.Command("chown", "-R", "65534:65534", filepath.Join(dir, "mail")).Run()
	cmd := exec.Command(dovecot, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Logf("dovecot: %v", err)
		return rfcServer{}, false
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := "127.0.0.1:" + port
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot did not start: %s\n%s", out.String(), log)
			return rfcServer{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rfcServer{name: "dovecot", addr: addr, user: testUser, pass: testPass}, true
}

func tlsDial(addr string) (net.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
}
