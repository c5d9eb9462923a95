package audit_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/audit"
)

// dovecotPorts are the listeners of one Dovecot instance.
type dovecotPorts struct{ imap, imaps, pop3, pop3s string }

// startDovecot runs a private Dovecot (its own config, base and log
// directories, RECIPES.md) on loopback with a self-signed certificate and
// the extra settings given, and stops it when the test ends. It skips
// without dovecot or root, and fails instead when CI is set.
func startDovecot(t *testing.T, extra string) dovecotPorts {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set; scripts/install-test-deps.sh installs dovecot)", why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("dovecot"); err != nil {
		if _, err := os.Stat("/usr/sbin/dovecot"); err != nil {
			miss("dovecot is not installed")
		}
	}
	if os.Geteuid() != 0 {
		miss("starting dovecot needs root")
	}
	dir, err := os.MkdirTemp("", "postern-audit-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cert, key := selfSignedPEM(t, "imap.test.example")
	for name, content := range map[string]string{"cert.pem": cert, "key.pem": key, "passwd": "alice@test.example:{PLAIN}secret::::\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := dovecotPorts{imap: freePort(t), imaps: freePort(t), pop3: freePort(t), pop3s: freePort(t)}
	port := func(a string) string { return a[strings.LastIndexByte(a, ':')+1:] }
	conf := fmt.Sprintf(`instance_name = postern-audit-%[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <%[2]s/cert.pem
ssl_key = <%[2]s/key.pem
mail_location = maildir:%[2]s/mail/%%d/%%n
first_valid_uid = 5000
passdb {
  driver = passwd-file
  args = %[2]s/passwd
}
userdb {
  driver = passwd-file
  args = %[2]s/passwd
  default_fields = uid=5000 gid=5000 home=%[2]s/home/%%d/%%n
}
service imap-login {
  inet_listener imap {
    port = %[3]s
  }
  inet_listener imaps {
    port = %[4]s
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = %[5]s
  }
  inet_listener pop3s {
    port = %[6]s
    ssl = yes
  }
}
%[7]s
`, filepath.Base(dir), dir, port(p.imap), port(p.imaps), port(p.pop3), port(p.pop3s), extra)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// No pipes: the daemon keeps its inherited stdout and stderr open, and
	// waiting for them to close would hang.
	start := exec.Command("dovecot", "-c", confPath)
	start.Stdout, start.Stderr = nil, nil
	if err := start.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("dovecot: %v\n%s", err, log)
	}
	t.Cleanup(func() {
		exec.Command("doveadm", "-c", confPath, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log:\n%s", log)
		}
	})
	for _, a := range []string{p.imap, p.pop3} {
		waitPrefix(t, a, map[string]string{p.imap: "* OK", p.pop3: "+OK"}[a])
	}
	return p
}

// waitPrefix waits until addr greets with prefix (10 s at most).
func waitPrefix(t *testing.T, addr, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := audit.Run(t.Context(), map[string]string{"* OK": "imap", "+OK": "pop3"}[prefix],
			audit.Options{Target: addr, Timeout: time.Second, Settle: time.Millisecond})
		if err == nil && strings.HasPrefix(r.Banner, prefix) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot on %s not ready: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// selfSignedPEM makes a throwaway certificate and key in PEM.
func selfSignedPEM(t *testing.T, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

// Debian's Dovecot as commonly (mis)configured: plaintext logins allowed,
// the default greeting and ID answer; then hardened.
func TestDovecot(t *testing.T) {
	t.Parallel()
	t.Run("permissive", func(t *testing.T) {
		t.Parallel()
		p := startDovecot(t, "disable_plaintext_auth = no\nauth_mechanisms = plain login\n")
		r := runAudit(t, "imap", fastOptions(p.imap))
		wantFinding(t, r, "banner-software-leak", audit.Low)
		wantFinding(t, r, "plaintext-login-before-tls", audit.High)
		wantFinding(t, r, "imap-id-leak", audit.Low)
		wantFinding(t, r, "tls-cert-self-signed", audit.Low)
		noFinding(t, r, "starttls-injection")
		if r.Software != "Dovecot" || !r.TLS.Offered || r.TLS.Version == "" || !strings.Contains(r.Implementation, "Dovecot") {
			t.Errorf("software %q implementation %q tls %+v", r.Software, r.Implementation, r.TLS)
		}

		r = runAudit(t, "pop3", fastOptions(p.pop3))
		wantFinding(t, r, "banner-software-leak", audit.Low)
		wantFinding(t, r, "plaintext-login-before-tls", audit.High)
		noFinding(t, r, "starttls-injection")
		if !strings.Contains(strings.Join(r.AuthBeforeTLS, " "), "USER") || r.TLS.Version == "" {
			t.Errorf("auth before TLS %v tls %+v", r.AuthBeforeTLS, r.TLS)
		}

		for proto, addr := range map[string]string{"imap": p.imaps, "pop3": p.pop3s} {
			o := fastOptions(addr)
			o.TLS = true
			r := runAudit(t, proto, o)
			if !r.TLS.Implicit || r.TLS.Version == "" {
				t.Errorf("%s implicit TLS: %+v", proto, r.TLS)
			}
			noFinding(t, r, "plaintext-login-before-tls")
		}
	})
	t.Run("hardened", func(t *testing.T) {
		t.Parallel()
		p := startDovecot(t, "disable_plaintext_auth = yes\nlogin_greeting = Ready.\nimap_id_send =\n")
		for proto, addr := range map[string]string{"imap": p.imap, "pop3": p.pop3} {
			// Dovecot trusts a client whose address is its own (127.0.0.1
			// to 127.0.0.1) as if it used TLS; come from 127.0.0.2, like
			// a client from elsewhere.
			o := fastOptions(addr)
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
			o.Dial = d.DialContext
			r := runAudit(t, proto, o)
			for _, id := range []string{"plaintext-login-before-tls", "banner-software-leak", "imap-id-leak", "starttls-injection"} {
				noFinding(t, r, id)
			}
			if len(r.AuthBeforeTLS) != 0 || len(r.AuthAfterTLS) == 0 {
				t.Errorf("%s: auth before TLS %v after %v", proto, r.AuthBeforeTLS, r.AuthAfterTLS)
			}
		}
	})
}
