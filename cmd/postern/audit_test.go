package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/server"
	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// auditTarget runs Postern's SMTP server in-process on loopback: domain
// example.org with user alice.
func auditTarget(t *testing.T) string {
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
	if _, err := st.AddUser(ctx, "alice@example.org", "not-a-real-hash"); err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := server.LoadTLS("", "", dir, "mx.example.org")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtpd.New(smtpd.Config{Hostname: "mx.example.org", TLS: tlsConfig, MaxMessageBytes: 1 << 20,
		MaxRecipients: 100, MaxConnections: 50, MaxConnectionsPerIP: 20, MaxLineLength: 2000,
		CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
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

func runAuditCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runAuditStdin(t, "", args...)
}

func runAuditStdin(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"audit"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// postern audit needs no config file and no data directory.
func TestAuditCommand(t *testing.T) {
	addr := auditTarget(t)
	cwd := t.TempDir()
	t.Chdir(cwd)
	users := filepath.Join(cwd, "users.txt")
	os.WriteFile(users, []byte("alice\nbob\n# comment\n\ncarol@example.org\n"), 0o644)

	code, out, stderr := runAuditCLI(t, "smtp", addr, "--users", users, "--domain", "example.org", "--json", "--timeout", "3s")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var doc struct {
		Target, Protocol string
		Users            struct {
			Method string
			Tried  int
			Valid  []string
		}
		Relay struct {
			Tested int
			Open   bool
		}
		Findings []struct{ ID, Severity string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if doc.Target != addr || doc.Protocol != "smtp" || doc.Users.Method != "rcpt" || doc.Users.Tried != 3 ||
		len(doc.Users.Valid) != 1 || doc.Users.Valid[0] != "alice@example.org" || doc.Relay.Tested != 16 || doc.Relay.Open {
		t.Errorf("report %+v", doc)
	}
	if _, err := os.Stat(filepath.Join(cwd, "postern-data")); err == nil {
		t.Error("audit created a data directory")
	}

	// The wordlist from stdin.
	code, out, stderr = runAuditStdin(t, "alice\nzed\n", "smtp", addr, "--users", "-", "--domain", "example.org", "--json", "--no-relay")
	if code != 0 || !strings.Contains(out, `"tried": 2`) || !strings.Contains(out, `"alice@example.org"`) {
		t.Errorf("--users -: exit %d, stderr %q\n%s", code, stderr, out)
	}

	// Text report, and exit 1 when a finding reaches --fail-on.
	code, out, stderr = runAuditCLI(t, "smtp", addr, "--fail-on", "low", "--no-relay", "--quiet")
	if code != 1 || !strings.Contains(stderr, "at or above low") {
		t.Errorf("--fail-on low: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"postern audit smtp " + addr, "banner:", "tls:", "LOW (", "[tls-cert-self-signed]", "fix:"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestAuditCommandErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"smtp", closed, "--timeout", "2s"}, "connect"},
		{[]string{"ftp", "127.0.0.1:21"}, "unknown protocol"},
		{[]string{"smtp"}, "arg(s)"},
		{[]string{"smtp", "nohost"}, "HOST:PORT"},
		{[]string{"smtp", "127.0.0.1:25", "--method", "finger"}, "--method"},
		{[]string{"smtp", "127.0.0.1:25", "--fail-on", "extreme"}, "--fail-on"},
		{[]string{"smtp", "127.0.0.1:25", "--users", "/nonexistent/users"}, "--users"},
		{[]string{"imap", "127.0.0.1:143", "--users", "/dev/null"}, "smtp only"},
		{[]string{"smtp", "127.0.0.1:25", "--relay-data"}, "--relay-to"},
		{[]string{"smtp", "127.0.0.1:25", "--smuggling"}, "--smuggling-to"},
	} {
		code, _, stderr := runAuditCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("audit %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// With --json a connection error is still one JSON document.
	code, out, _ := runAuditCLI(t, "smtp", closed, "--json", "--timeout", "2s")
	var doc struct {
		Target string
		Errors []string
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 2 || err != nil || doc.Target != closed || len(doc.Errors) != 1 {
		t.Errorf("--json on a refused connection: exit %d, %v, %q", code, err, out)
	}
}
