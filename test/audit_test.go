//go:build !windows

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/postfixtest"
)

// The tests in this file run the built `postern audit` as a user would,
// against servers started by the test on loopback: Postern itself (SMTP,
// IMAP and POP3), and a private Postfix from Debian set up four ways. They
// read the --json document, the contract DESIGN.md describes.

// auditReport is the part of `postern audit --json` the tests check.
type auditReport struct {
	Target             string   `json:"target"`
	Protocol           string   `json:"protocol"`
	Banner             string   `json:"banner"`
	Software           string   `json:"software"`
	Version            string   `json:"version"`
	Extensions         []string `json:"extensions"`
	ExtensionsAfterTLS []string `json:"extensions_after_tls"`
	AuthBeforeTLS      []string `json:"auth_before_tls"`
	AuthAfterTLS       []string `json:"auth_after_tls"`
	TLS                struct {
		Offered     bool   `json:"offered"`
		Implicit    bool   `json:"implicit"`
		Version     string `json:"version"`
		Cipher      string `json:"cipher"`
		CertSubject string `json:"cert_subject"`
		SelfSigned  bool   `json:"self_signed"`
		Expires     string `json:"expires"`
	} `json:"tls"`
	VRFY  string `json:"vrfy"`
	EXPN  string `json:"expn"`
	Users struct {
		Method       string            `json:"method"`
		Tried        int               `json:"tried"`
		Valid        []string          `json:"valid"`
		Inconclusive []string          `json:"inconclusive"`
		CatchAll     bool              `json:"catch_all"`
		Throttled    bool              `json:"throttled"`
		Tarpit       bool              `json:"tarpit"`
		Greylisted   bool              `json:"greylisted"`
		Reconnects   int               `json:"reconnects"`
		Methods      map[string]string `json:"methods"`
		Complete     bool              `json:"complete"`
	} `json:"users"`
	Relay struct {
		Tested   int      `json:"tested"`
		Open     bool     `json:"open"`
		Accepted []string `json:"accepted"`
		To       string   `json:"to"`
	} `json:"relay"`
	Findings []auditFinding `json:"findings"`
	Errors   []string       `json:"errors"`
}

// auditFinding is one entry of the report's findings.
type auditFinding struct {
	ID       string   `json:"id"`
	Severity string   `json:"severity"`
	Title    string   `json:"title"`
	Evidence []string `json:"evidence"`
	Fix      string   `json:"fix"`
}

// auditKeys are the JSON keys auditReport reads, so that a renamed field
// fails loudly instead of decoding as zero.
var auditKeys = map[string][]string{
	"":      {"target", "protocol", "banner", "software", "version", "extensions", "extensions_after_tls", "auth_before_tls", "auth_after_tls", "tls", "vrfy", "expn", "users", "relay", "smuggling", "findings", "errors"},
	"tls":   {"offered", "implicit", "version", "cipher", "cert_subject", "self_signed", "expires"},
	"users": {"method", "tried", "valid", "inconclusive", "catch_all", "throttled", "tarpit", "greylisted", "reconnects", "methods", "complete"},
	"relay": {"tested", "open", "accepted", "to"},
}

// auditTimeout bounds one `postern audit` run.
const auditTimeout = 60 * time.Second

// runAuditCLI runs `postern audit PROTO TARGET --json ARGS...` and returns
// the decoded report and the exit status (0 or 1; 2, a usage or connection
// error, fails the test).
func runAuditCLI(t *testing.T, proto, target string, args ...string) (auditReport, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
	defer cancel()
	argv := append([]string{"audit", proto, target, "--json", "--quiet"}, args...)
	cmd := exec.CommandContext(ctx, posternBin, argv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	t.Logf("postern %s: %v", strings.Join(argv, " "), time.Since(start).Round(time.Millisecond))
	code := 0
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("postern %s: no result within %v\nstderr:\n%s", strings.Join(argv, " "), auditTimeout, e.String())
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("postern %s: %v", strings.Join(argv, " "), err)
	}
	if code != 0 && code != 1 {
		t.Fatalf("postern %s: exit status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), code, o.String(), e.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(o.Bytes(), &doc); err != nil {
		t.Fatalf("postern %s: output is not one JSON document: %v\n%s\nstderr:\n%s", strings.Join(argv, " "), err, o.String(), e.String())
	}
	for obj, keys := range auditKeys {
		m := doc
		if obj != "" {
			m, _ = doc[obj].(map[string]any)
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON output has no %s.%s", obj, k)
			}
		}
	}
	var r auditReport
	if err := json.Unmarshal(o.Bytes(), &r); err != nil {
		t.Fatalf("decoding the report: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("report of postern %s:\n%s", strings.Join(argv, " "), o.String())
		}
	})
	return r, code
}

// finding returns the finding with this id, or nil.
func (r *auditReport) finding(id string) *auditFinding {
	for i := range r.Findings {
		if r.Findings[i].ID == id {
			return &r.Findings[i]
		}
	}
	return nil
}

func (r *auditReport) findingIDs() []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.ID+"("+f.Severity+")")
	}
	return out
}

// wantAuditFinding checks that a finding is there, at this severity, with
// evidence and a fix hint.
func wantAuditFinding(t *testing.T, r auditReport, id, severity string) {
	t.Helper()
	f := r.finding(id)
	if f == nil {
		t.Errorf("no %s finding; have %v", id, r.findingIDs())
		return
	}
	if f.Severity != severity {
		t.Errorf("finding %s is %s, want %s", id, f.Severity, severity)
	}
	if len(f.Evidence) == 0 || f.Fix == "" {
		t.Errorf("finding %s lacks evidence or a fix: %+v", id, *f)
	}
}

func noAuditFinding(t *testing.T, r auditReport, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if f := r.finding(id); f != nil {
			t.Errorf("unexpected finding %+v", *f)
		}
	}
}

func noHighFinding(t *testing.T, r auditReport) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Severity == "high" {
			t.Errorf("high finding %s: %s", f.ID, f.Title)
		}
	}
}

// usersFile writes a wordlist for --users.
func usersFile(t *testing.T, names ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(p, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// auditPostern starts a postern with users alice and bob in example.test,
// the given [limits] lines, and, besides SMTP, the listeners named in
// extra (imap, imaps, pop3, pop3s). It returns the server and the port of
// each extra listener.
func auditPostern(t *testing.T, limits string, extra ...string) (*server, map[string]int) {
	t.Helper()
	s := mxWithUsers(t, limits, "alice", "bob")
	ports := map[string]int{}
	if len(extra) > 0 {
		cfg, err := os.ReadFile(s.config)
		if err != nil {
			t.Fatal(err)
		}
		c := string(cfg)
		for _, key := range extra {
			ports[key] = freePort(t)
			line := "\n" + key + " = []\n"
			if !strings.Contains(c, line) {
				t.Fatalf("config has no %q line to replace:\n%s", line, c)
			}
			c = strings.Replace(c, line, fmt.Sprintf("\n%s = [\"127.0.0.1:%d\"]\n", key, ports[key]), 1)
		}
		if err := os.WriteFile(s.config, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	for key, port := range ports {
		if !strings.Contains(s.stdout.String(), fmt.Sprintf("%s listening on 127.0.0.1:%d", key, port)) {
			t.Fatalf("no %s listener in the server's output:\n%s", key, s.stdout.String())
		}
	}
	return s, ports
}

var auditPosternUsers = []string{"alice@example.test", "bob@example.test"}

// TestAuditPosternSMTP audits Postern's MX as an attacker would: VRFY and
// EXPN reveal nobody, RCPT does tell users apart but the harvesting
// defence slows it down and then drops the connection, which the audit
// reports instead of guessing; STARTTLS is offered; no relaying.
func TestAuditPosternSMTP(t *testing.T) {
	t.Parallel()

	// Postern's default limits: unknown recipients past the third in a
	// session are answered 1 s, 2 s, ... late. Three unknown names after
	// the audit's two random probes cost 3 s.
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		s, _ := auditPostern(t, "")
		target := fmt.Sprintf("127.0.0.1:%d", s.smtpPort)
		users := usersFile(t, "alice", "bob", "nobody01", "nobody02", "nobody03")
		r, code := runAuditCLI(t, "smtp", target, "--users", users, "--domain", "example.test")
		if code != 0 {
			t.Errorf("exit status %d, want 0 (no high finding); findings %v", code, r.findingIDs())
		}
		if r.Protocol != "smtp" || r.Target != target || !strings.HasPrefix(r.Banner, "220 "+hostname) {
			t.Errorf("protocol %q target %q banner %q", r.Protocol, r.Target, r.Banner)
		}
		noAuditFinding(t, r, "banner-software-leak", "banner-version-leak")
		if !r.TLS.Offered || r.TLS.Implicit || r.TLS.Version != "TLS1.3" || r.TLS.Cipher == "" || !r.TLS.SelfSigned ||
			!strings.Contains(r.TLS.CertSubject, hostname) || r.TLS.Expires == "" {
			t.Errorf("tls %+v", r.TLS)
		}
		if !slices.Contains(r.Extensions, "STARTTLS") || slices.Contains(r.ExtensionsAfterTLS, "STARTTLS") {
			t.Errorf("extensions %v, after TLS %v", r.Extensions, r.ExtensionsAfterTLS)
		}
		if len(r.AuthBeforeTLS) != 0 {
			t.Errorf("auth before TLS %v", r.AuthBeforeTLS)
		}
		noAuditFinding(t, r, "starttls-missing", "starttls-injection", "auth-before-tls")
		wantAuditFinding(t, r, "tls-cert-self-signed", "low")

		// VRFY and EXPN say nothing about anyone.
		if r.VRFY != "non-committal" || r.EXPN != "disabled" {
			t.Errorf("vrfy %q expn %q, want non-committal and disabled", r.VRFY, r.EXPN)
		}
		noAuditFinding(t, r, "vrfy-enabled", "expn-enabled")

		// RCPT: the two users, no false one, and the tarpit noticed.
		u := r.Users
		if u.Method != "rcpt" || u.Tried != 5 || !slices.Equal(u.Valid, auditPosternUsers) || u.CatchAll || !u.Tarpit || !u.Complete {
			t.Errorf("users %+v", u)
		}
		wantAuditFinding(t, r, "enumeration-defended", "info")
		wantAuditFinding(t, r, "users-enumerated", "low")
		noAuditFinding(t, r, "rcpt-enumeration-unlimited")

		// Not an open relay.
		if r.Relay.Tested != 16 || r.Relay.Open || len(r.Relay.Accepted) != 0 {
			t.Errorf("relay %+v", r.Relay)
		}
		noAuditFinding(t, r, "open-relay")
		noHighFinding(t, r)
		if len(r.Errors) != 0 {
			t.Errorf("errors %v", r.Errors)
		}

		// VRFY and EXPN asked for explicitly: no user claimed.
		for _, method := range []string{"vrfy", "expn"} {
			r, code := runAuditCLI(t, "smtp", target, "--users", users, "--domain", "example.test", "--method", method, "--no-relay")
			want := map[string]string{"vrfy": "non-committal", "expn": "disabled"}[method]
			if code != 0 || r.Users.Method != method || len(r.Users.Valid) != 0 || r.Users.Methods[method] != want || r.Relay.Tested != 0 {
				t.Errorf("--method %s: exit %d, users %+v, relay %+v", method, code, r.Users, r.Relay)
			}
			noAuditFinding(t, r, "users-enumerated", "vrfy-enabled", "expn-enabled")
		}
	})

	// The same defence with its delay cut to 100 ms and at most five
	// unknown recipients a connection: the sixth is answered 421 and the
	// connection closed. The audit reports the tarpit and the throttling,
	// reconnects, retries the guess and still claims only the real users.
	t.Run("throttled", func(t *testing.T) {
		t.Parallel()
		s, _ := auditPostern(t, "rcpt_unknown_delay = \"100ms\"\nrcpt_unknown_max = 5")
		target := fmt.Sprintf("127.0.0.1:%d", s.smtpPort)
		users := usersFile(t, "alice", "nobody01", "bob", "nobody02", "nobody03", "nobody04", "nobody05")
		r, code := runAuditCLI(t, "smtp", target, "--users", users, "--domain", "example.test", "--slow-reply", "60ms", "--no-relay")
		if code != 0 {
			t.Errorf("exit status %d, want 0; findings %v", code, r.findingIDs())
		}
		u := r.Users
		if u.Method != "rcpt" || u.Tried != 7 || !slices.Equal(u.Valid, auditPosternUsers) || !u.Tarpit || !u.Throttled || u.Reconnects == 0 ||
			!u.Complete || len(u.Inconclusive) != 0 {
			t.Errorf("users %+v", u)
		}
		wantAuditFinding(t, r, "enumeration-defended", "info")
		if f := r.finding("enumeration-defended"); f != nil {
			ev := strings.Join(f.Evidence, "\n")
			if !strings.Contains(ev, "421") || !strings.Contains(ev, "tarpit") {
				t.Errorf("enumeration-defended evidence does not show the 421 and the tarpit:\n%s", ev)
			}
		}
		wantAuditFinding(t, r, "users-enumerated", "low")
		noAuditFinding(t, r, "rcpt-enumeration-unlimited")
	})
}

// TestAuditPosternIMAPPOP3 audits Postern's IMAP and POP3 listeners, clear
// text (STARTTLS, STLS) and implicit TLS: no way to send a password before
// TLS, no STARTTLS injection, no software named.
func TestAuditPosternIMAPPOP3(t *testing.T) {
	t.Parallel()
	_, ports := auditPostern(t, "", "imap", "imaps", "pop3", "pop3s")
	for _, tc := range []struct {
		proto, listener, starttls string
		implicit                  bool
	}{
		{"imap", "imap", "STARTTLS", false}, {"imap", "imaps", "", true},
		{"pop3", "pop3", "STLS", false}, {"pop3", "pop3s", "", true},
	} {
		t.Run(tc.listener, func(t *testing.T) {
			t.Parallel()
			var args []string
			if tc.implicit {
				args = append(args, "--tls")
			}
			r, code := runAuditCLI(t, tc.proto, fmt.Sprintf("127.0.0.1:%d", ports[tc.listener]), args...)
			if code != 0 {
				t.Errorf("exit status %d, want 0; findings %v", code, r.findingIDs())
			}
			if r.Protocol != tc.proto || r.Banner == "" {
				t.Errorf("protocol %q banner %q", r.Protocol, r.Banner)
			}
			if !r.TLS.Offered || r.TLS.Implicit != tc.implicit || r.TLS.Version == "" || !r.TLS.SelfSigned {
				t.Errorf("tls %+v", r.TLS)
			}
			if tc.starttls != "" && !slices.Contains(r.Extensions, tc.starttls) {
				t.Errorf("capabilities %v lack %s", r.Extensions, tc.starttls)
			}
			if len(r.AuthBeforeTLS) != 0 || len(r.AuthAfterTLS) == 0 {
				t.Errorf("auth before TLS %v, after TLS %v", r.AuthBeforeTLS, r.AuthAfterTLS)
			}
			noAuditFinding(t, r, "plaintext-login-before-tls", "starttls-missing", "starttls-injection", "banner-software-leak", "banner-version-leak")
			noHighFinding(t, r)
			if len(r.Errors) != 0 {
				t.Errorf("errors %v", r.Errors)
			}
		})
	}
}

// TestAuditPostfix audits a private Postfix from Debian (internal/
// postfixtest) with users alice and bob in test.example, seen through four
// smtpd services: VRFY enabled, VRFY disabled, a catch-all domain, and an
// open relay.
func TestAuditPostfix(t *testing.T) {
	t.Parallel()
	needPostfix(t)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	vrfy, noVRFY, catchAll, openRelay := addr(), addr(), addr(), addr()
	svc := func(a string, opts ...string) string {
		return a + "/inet=" + a + " inet n - n - - smtpd" + strings.Join(opts, "")
	}
	pf := postfixtest.Start(t, postfixtest.Options{
		Hostname:  "mx.test.example",
		Mailboxes: []string{"alice@test.example", "bob@test.example"},
		TLS:       true,
		Main:      []string{"disable_vrfy_command = no", "smtpd_relay_restrictions = reject_unauth_destination", "mynetworks = 127.0.0.0/8"},
		Master: []string{
			// Debian's banner, which names the software.
			svc(vrfy, " -o { smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU) }"),
			svc(noVRFY, " -o disable_vrfy_command=yes"),
			svc(catchAll, " -o virtual_mailbox_maps=inline:{@test.example=test.example/catchall/}"),
			svc(openRelay, " -o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination"),
		},
	})
	for _, a := range []string{vrfy, noVRFY, catchAll, openRelay} {
		if err := postfixtest.WaitGreeting(a, 15*time.Second); err != nil {
			t.Fatalf("postfix: %v\nlog:\n%s", err, pf.Log())
		}
	}
	users := usersFile(t, "alice", "bob", "carol", "dave", "root", "admin", "info", "sales")
	want := []string{"alice@test.example", "bob@test.example"}
	args := []string{"--users", users, "--domain", "test.example"}

	t.Run("vrfy", func(t *testing.T) {
		t.Parallel()
		r, code := runAuditCLI(t, "smtp", vrfy, args...)
		if code != 0 {
			t.Errorf("exit status %d, want 0 (no high finding); findings %v", code, r.findingIDs())
		}
		if r.Software != "Postfix" || r.VRFY != "reveals users" {
			t.Errorf("software %q vrfy %q", r.Software, r.VRFY)
		}
		wantAuditFinding(t, r, "vrfy-enabled", "medium")
		wantAuditFinding(t, r, "banner-software-leak", "low")
		if !r.TLS.Offered || r.TLS.Version == "" || r.TLS.CertSubject != "CN=mx.test.example" || !r.TLS.SelfSigned {
			t.Errorf("tls %+v", r.TLS)
		}
		u := r.Users
		if u.Method != "vrfy" || !slices.Equal(u.Valid, want) || u.CatchAll || u.Tried != 8 || !u.Complete || len(u.Inconclusive) != 0 {
			t.Errorf("users %+v", u)
		}
		wantAuditFinding(t, r, "users-enumerated", "medium")
		if r.Relay.Tested != 16 || r.Relay.Open {
			t.Errorf("relay %+v", r.Relay)
		}
		noAuditFinding(t, r, "open-relay")
	})
	t.Run("rcpt", func(t *testing.T) {
		t.Parallel()
		r, code := runAuditCLI(t, "smtp", noVRFY, append(args, "--no-relay")...)
		if code != 0 {
			t.Errorf("exit status %d, want 0; findings %v", code, r.findingIDs())
		}
		if r.VRFY != "disabled" {
			t.Errorf("vrfy %q", r.VRFY)
		}
		noAuditFinding(t, r, "vrfy-enabled")
		u := r.Users
		if u.Method != "rcpt" || !slices.Equal(u.Valid, want) || u.CatchAll || u.Tried != 8 || !u.Complete || len(u.Inconclusive) != 0 {
			t.Errorf("users %+v", u)
		}
		wantAuditFinding(t, r, "users-enumerated", "medium")
		// Unlike Postern, this Postfix neither slows down nor drops a
		// client that tries eight names, two of them random.
		wantAuditFinding(t, r, "rcpt-enumeration-unlimited", "low")
		// VRFY asked for explicitly: it is disabled, so nothing is claimed.
		r, _ = runAuditCLI(t, "smtp", noVRFY, append(args, "--no-relay", "--method", "vrfy")...)
		if r.Users.Method != "vrfy" || len(r.Users.Valid) != 0 || r.Users.Methods["vrfy"] != "disabled" {
			t.Errorf("--method vrfy: users %+v", r.Users)
		}
	})
	t.Run("catch-all", func(t *testing.T) {
		t.Parallel()
		r, code := runAuditCLI(t, "smtp", catchAll, args...)
		if code != 0 {
			t.Errorf("exit status %d, want 0; findings %v", code, r.findingIDs())
		}
		if !r.Users.CatchAll || len(r.Users.Valid) != 0 {
			t.Errorf("users %+v", r.Users)
		}
		wantAuditFinding(t, r, "catch-all", "info")
		noAuditFinding(t, r, "users-enumerated")
		if r.Relay.Tested != 16 || r.Relay.Open {
			t.Errorf("relay %+v", r.Relay)
		}
	})
	t.Run("open-relay", func(t *testing.T) {
		t.Parallel()
		r, code := runAuditCLI(t, "smtp", openRelay)
		if code != 1 {
			t.Errorf("exit status %d, want 1 (a high finding)", code)
		}
		if !r.Relay.Open || r.Relay.Tested != 16 || len(r.Relay.Accepted) == 0 || r.Relay.To != "relaytest@example.com" {
			t.Errorf("relay %+v", r.Relay)
		}
		wantAuditFinding(t, r, "open-relay", "high")
		// No message was sent: only RCPT was asked (no --relay-data).
		if q, err := pf.Postqueue("-p"); err != nil || !strings.Contains(q, "Mail queue is empty") {
			t.Errorf("postqueue -p: %v\n%s", err, q)
		}
	})
}
