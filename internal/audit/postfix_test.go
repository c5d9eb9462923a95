package audit_test

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/audit"
)

// postfixPorts are the smtpd services of one Postfix instance: the same
// users (alice and bob in test.example) seen four ways.
type postfixPorts struct {
	vrfy      string // disable_vrfy_command = no: VRFY leaks; STARTTLS
	noVRFY    string // VRFY disabled: RCPT must find the users
	catchAll  string // @test.example accepts everything
	openRelay string // 127/8 in mynetworks may relay
	// smuggling ends DATA at bare LF (smtpd_forbid_bare_newline = no);
	// fixed does not (normalize, with no exclusions).
	smuggling, fixed string
}

// needPostfix skips (or, with CI set, fails) when Debian's Postfix cannot
// be run here.
func needPostfix(t *testing.T) {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set; scripts/install-test-deps.sh installs postfix)", why)
		}
		t.Skip(why)
	}
	for _, tool := range []string{"postfix", "postconf", "postmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				miss(tool + " is not installed")
			}
		}
	}
	if os.Geteuid() != 0 {
		miss("starting postfix needs root")
	}
	if _, err := user.Lookup("postfix"); err != nil {
		miss("no postfix user: " + err.Error())
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPostfix configures and starts a private Postfix instance (its own
// config, queue and data directories) listening on loopback only, as in
// RECIPES.md, and stops it when the test ends.
func startPostfix(t *testing.T) postfixPorts {
	t.Helper()
	needPostfix(t)
	dir, err := os.MkdirTemp("", "postern-audit-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	etc, data := filepath.Join(dir, "etc"), filepath.Join(dir, "data")
	for _, d := range []string{etc, data, filepath.Join(dir, "queue")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pf, _ := user.Lookup("postfix")
	uid, _ := strconv.Atoi(pf.Uid)
	gid, _ := strconv.Atoi(pf.Gid)
	if err := os.Chown(data, uid, gid); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("master.cf", string(master))
	write("main.cf", "")
	if dm, err := os.ReadFile("/etc/postfix/dynamicmaps.cf"); err == nil {
		write("dynamicmaps.cf", string(dm))
	}
	cert, key := selfSignedPEM(t, "mx.test.example")
	write("cert.pem", cert)
	write("key.pem", key)
	write("vmailbox", "alice@test.example test.example/alice/\nbob@test.example test.example/bob/\n")
	write("vmailbox-catchall", "alice@test.example test.example/alice/\nbob@test.example test.example/bob/\n@test.example test.example/catchall/\n")

	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	p := postfixPorts{vrfy: freePort(t), noVRFY: freePort(t), catchAll: freePort(t), openRelay: freePort(t),
		smuggling: freePort(t), fixed: freePort(t)}
	run("postconf", "-c", etc, "-e",
		"queue_directory = "+filepath.Join(dir, "queue"), "data_directory = "+data,
		"mail_owner = postfix", "compatibility_level = 3.6",
		"myhostname = mx.test.example", "mydestination =", "alias_maps =", "alias_database =",
		"inet_interfaces = 127.0.0.1", "inet_protocols = ipv4", "mynetworks = 127.0.0.0/8",
		"virtual_mailbox_domains = test.example", "virtual_mailbox_base = "+filepath.Join(dir, "mail"),
		"virtual_mailbox_maps = hash:"+filepath.Join(etc, "vmailbox"),
		"virtual_uid_maps = static:5000", "virtual_gid_maps = static:5000",
		"maillog_file_prefixes = "+dir, "maillog_file = "+filepath.Join(dir, "postfix.log"),
		"disable_vrfy_command = no",
		"smtpd_relay_restrictions = reject_unauth_destination",
		"default_process_limit = 10")
	run("postconf", "-c", etc, "-F", "*/*/chroot = n")
	run("postconf", "-c", etc, "-M#", "smtp/inet")
	svc := func(addr string, opts ...string) string {
		return addr + "/inet=" + addr + " inet n - n - - smtpd" + strings.Join(opts, "")
	}
	run("postconf", "-c", etc, "-M", svc(p.vrfy, " -o smtpd_tls_security_level=may -o smtpd_tls_cert_file="+filepath.Join(etc, "cert.pem")+
		" -o smtpd_tls_key_file="+filepath.Join(etc, "key.pem")))
	run("postconf", "-c", etc, "-M", svc(p.noVRFY, " -o disable_vrfy_command=yes"))
	run("postconf", "-c", etc, "-M", svc(p.catchAll, " -o virtual_mailbox_maps=hash:"+filepath.Join(etc, "vmailbox-catchall")))
	run("postconf", "-c", etc, "-M", svc(p.openRelay, " -o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination"))
	run("postconf", "-c", etc, "-M", svc(p.smuggling, " -o smtpd_forbid_bare_newline=no"))
	run("postconf", "-c", etc, "-M", svc(p.fixed, " -o smtpd_forbid_bare_newline=normalize -o smtpd_forbid_bare_newline_exclusions="))
	run("postmap", "-c", etc, filepath.Join(etc, "vmailbox"))
	run("postmap", "-c", etc, filepath.Join(etc, "vmailbox-catchall"))
	run("postfix", "-c", etc, "start")
	t.Cleanup(func() {
		exec.Command("postfix", "-c", etc, "stop").Run()
		if t.Failed() || os.Getenv("AUDIT_POSTFIX_LOG") != "" {
			if log, err := os.ReadFile(filepath.Join(dir, "postfix.log")); err == nil {
				t.Logf("postfix log:\n%s", log)
			}
		}
	})
	for _, addr := range []string{p.vrfy, p.noVRFY, p.catchAll, p.openRelay, p.smuggling, p.fixed} {
		waitGreeting(t, addr)
	}
	return p
}

// waitGreeting waits until a 220 greeting arrives at addr (10 s at most).
func waitGreeting(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 3)
			_, err = c.Read(buf)
			c.Close()
			if err == nil && string(buf) == "220" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix on %s not ready: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPostfix audits real Postfix servers from Debian on loopback.
func TestPostfix(t *testing.T) {
	t.Parallel()
	p := startPostfix(t)
	users := []string{"alice", "bob", "carol", "dave", "root", "admin", "info", "sales"}
	want := []string{"alice@test.example", "bob@test.example"}
	opts := func(addr string) audit.Options {
		o := fastOptions(addr)
		o.Users, o.Domain = users, "test.example"
		return o
	}

	t.Run("vrfy", func(t *testing.T) {
		t.Parallel()
		r := runAudit(t, "smtp", opts(p.vrfy))
		if r.Software != "Postfix" || r.VRFY != "reveals users" || r.EXPN != "disabled" {
			t.Errorf("software %q vrfy %q expn %q", r.Software, r.VRFY, r.EXPN)
		}
		wantFinding(t, r, "vrfy-enabled", audit.Medium)
		wantFinding(t, r, "banner-software-leak", audit.Low)
		wantFinding(t, r, "tls-cert-self-signed", audit.Low)
		noFinding(t, r, "starttls-injection")
		if !r.TLS.Offered || r.TLS.Version == "" || r.TLS.CertSubject != "CN=mx.test.example" || !slices.Contains(r.ExtensionsAfterTLS, "VRFY") {
			t.Errorf("tls %+v, extensions after TLS %v", r.TLS, r.ExtensionsAfterTLS)
		}
		wantFinding(t, r, "users-enumerated", audit.Medium)
		if r.Users.Method != "vrfy" || !reflect.DeepEqual(r.Users.Valid, want) || r.Users.CatchAll || r.Users.Tried != len(users) {
			t.Errorf("users %+v", r.Users)
		}
		if r.Relay.Tested != 16 || r.Relay.Open {
			t.Errorf("relay %+v", r.Relay)
		}
	})
	t.Run("rcpt", func(t *testing.T) {
		t.Parallel()
		r := runAudit(t, "smtp", opts(p.noVRFY))
		if r.VRFY != "disabled" {
			t.Errorf("vrfy %q", r.VRFY)
		}
		noFinding(t, r, "vrfy-enabled")
		if r.Users.Method != "rcpt" || !reflect.DeepEqual(r.Users.Valid, want) {
			t.Errorf("users %+v", r.Users)
		}
		// Asked for VRFY explicitly: it is disabled, so nothing is claimed.
		o := opts(p.noVRFY)
		o.Method, o.NoRelay = "vrfy", true
		r = runAudit(t, "smtp", o)
		if r.Users.Method != "vrfy" || len(r.Users.Valid) != 0 || r.Users.Methods["vrfy"] != "disabled" {
			t.Errorf("--method vrfy: users %+v", r.Users)
		}
	})
	t.Run("catch-all", func(t *testing.T) {
		t.Parallel()
		r := runAudit(t, "smtp", opts(p.catchAll))
		if !r.Users.CatchAll || len(r.Users.Valid) != 0 {
			t.Errorf("users %+v", r.Users)
		}
		wantFinding(t, r, "catch-all", audit.Info)
		if r.Relay.Open {
			t.Errorf("relay %+v", r.Relay)
		}
	})
	t.Run("open-relay", func(t *testing.T) {
		t.Parallel()
		o := opts(p.openRelay)
		o.Users = nil
		r := runAudit(t, "smtp", o)
		if !r.Relay.Open || r.Relay.Tested != 16 {
			t.Errorf("relay %+v", r.Relay)
		}
		wantFinding(t, r, "open-relay", audit.High)
		if testing.Verbose() {
			r.WriteText(os.Stderr)
		}
	})
	t.Run("smuggling", func(t *testing.T) {
		t.Parallel()
		o := fastOptions(p.smuggling)
		o.NoRelay, o.Smuggling, o.SmuggleTo = true, true, "alice@test.example"
		r := runAudit(t, "smtp", o)
		if want := []string{`\n.\n`, `\n.\r\n`, `\r\n.\n`}; !reflect.DeepEqual(r.Smuggling.AcceptedSequences, want) {
			t.Errorf("accepted %q, want %q (errors %v)", r.Smuggling.AcceptedSequences, want, r.Errors)
		}
		wantFinding(t, r, "smtp-smuggling", audit.High)

		o.Target = p.fixed
		r = runAudit(t, "smtp", o)
		if !r.Smuggling.Tested || len(r.Smuggling.AcceptedSequences) != 0 || len(r.Errors) != 0 {
			t.Errorf("fixed postfix: smuggling %+v errors %v", r.Smuggling, r.Errors)
		}
	})
}
