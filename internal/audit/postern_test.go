package audit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/audit"
	"github.com/postern-mail/postern/internal/config"
	"github.com/postern-mail/postern/internal/server"
)

// posternServer runs the whole Postern server in-process from a TOML
// config, as `postern serve` does, with every listener on a free loopback
// port. It returns the addresses by listener name.
func posternServer(t *testing.T) map[string]string {
	t.Helper()
	// A port picked free can be taken by another test before the server
	// binds it: pick new ones and try again.
	for attempt := 1; ; attempt++ {
		addrs, err := tryPosternServer(t)
		if err == nil {
			return addrs
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("postern stopped: %v", err)
		}
		t.Logf("retrying with other ports: %v", err)
	}
}

func tryPosternServer(t *testing.T) (map[string]string, error) {
	t.Helper()
	dir := t.TempDir()
	addrs := map[string]string{}
	var listen strings.Builder
	for _, name := range []string{"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"} {
		addrs[name] = freePort(t)
		fmt.Fprintf(&listen, "%s = [%q]\n", name, addrs[name])
	}
	listen.WriteString("admin = []\n")
	path := filepath.Join(dir, "postern.toml")
	toml := fmt.Sprintf("hostname = \"mx.example.org\"\ndata_dir = %q\n[listen]\n%s", filepath.Join(dir, "data"), listen.String())
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard) }()
	stopped := false
	t.Cleanup(func() {
		cancel()
		if stopped {
			return
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("postern did not stop")
		}
	})
	for _, a := range addrs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case runErr := <-done:
				stopped = true
				if runErr == nil {
					runErr = fmt.Errorf("server returned before listening on %s", a)
				}
				return nil, runErr
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("postern not listening on %s: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs, nil
}

// Postern's IMAP, POP3 and submission listeners, clear text with
// STARTTLS/STLS and implicit TLS: no login before TLS, no injection, no
// software named.
func TestPosternListeners(t *testing.T) {
	t.Parallel()
	addrs := posternServer(t)
	for _, tc := range []struct {
		proto, listener string
		implicit        bool
	}{{"imap", "imap", false}, {"imap", "imaps", true}, {"pop3", "pop3", false}, {"pop3", "pop3s", true}} {
		t.Run(tc.listener, func(t *testing.T) {
			o := fastOptions(addrs[tc.listener])
			o.TLS = tc.implicit
			r := runAudit(t, tc.proto, o)
			if !r.TLS.Offered || r.TLS.Implicit != tc.implicit || r.TLS.Version == "" || !r.TLS.SelfSigned {
				t.Errorf("tls %+v", r.TLS)
			}
			if len(r.AuthBeforeTLS) != 0 || len(r.AuthAfterTLS) == 0 {
				t.Errorf("auth before TLS %v, after %v", r.AuthBeforeTLS, r.AuthAfterTLS)
			}
			for _, id := range []string{"plaintext-login-before-tls", "starttls-injection", "starttls-missing", "banner-software-leak", "banner-version-leak"} {
				noFinding(t, r, id)
			}
			if r.Worst().Rank() > audit.Low.Rank() {
				t.Errorf("findings %v", ids(r))
			}
		})
	}
	// Submission: AUTH only after TLS, no relaying without it.
	for _, tc := range []struct {
		listener string
		implicit bool
	}{{"submission", false}, {"submissions", true}} {
		t.Run(tc.listener, func(t *testing.T) {
			o := fastOptions(addrs[tc.listener])
			o.TLS = tc.implicit
			r := runAudit(t, "smtp", o)
			if r.TLS.Version == "" || r.TLS.Implicit != tc.implicit || len(r.AuthBeforeTLS) != 0 || len(r.AuthAfterTLS) == 0 {
				t.Errorf("tls %+v auth before %v after %v", r.TLS, r.AuthBeforeTLS, r.AuthAfterTLS)
			}
			if r.Relay.Tested != 16 || r.Relay.Open {
				t.Errorf("relay %+v errors %v", r.Relay, r.Errors)
			}
			noFinding(t, r, "auth-before-tls")
			noFinding(t, r, "starttls-injection")
		})
	}

	// Implicit TLS without --tls: a clear message, not a bare timeout.
	o := fastOptions(addrs["imaps"])
	o.Timeout = 300 * time.Millisecond
	if _, err := audit.Run(t.Context(), "imap", o); err == nil || !strings.Contains(err.Error(), "--tls") {
		t.Errorf("imaps without --tls: %v", err)
	}
}
