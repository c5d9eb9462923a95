package msgauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

// dkimpy runs testdata/dkimpy.py with Debian's python3 and python3-dkim
// (scripts/install-test-deps.sh installs them); it skips, or fails when CI
// is set, if they are missing.
func dkimpy(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	py := "/usr/bin/python3"
	dkimpyOnce.Do(func() { dkimpyErr = exec.Command(py, "-c", "import dkim, nacl").Run() })
	if dkimpyErr != nil {
		msg := "python3-dkim (dkimpy) and python3-nacl are not installed; scripts/install-test-deps.sh installs them"
		if ci := strings.ToLower(os.Getenv("CI")); ci != "" && ci != "0" && ci != "false" && ci != "no" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(py, append([]string{filepath.Join("testdata", "dkimpy.py")}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

var (
	dkimpyOnce sync.Once
	dkimpyErr  error
)

const interopMessage = "From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: interop\r\n" +
	"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <interop@example.org>\r\n\r\n" +
	"Hello Bob,\r\n  with  spaces   and trailing blank lines\r\n\r\n\r\n"

// A message Postern signed verifies with dkimpy, both signatures.
func TestDKIMSignedVerifiesWithDkimpy(t *testing.T) {
	ks := testKeyStore(t)
	s := &Signer{Keys: ks, IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }}
	sigs, err := s.Sign(context.Background(), "alice@example.org", strings.NewReader(interopMessage))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := ks.Keys("example.org")
	records := map[string]string{}
	for _, k := range keys {
		records[k.Name()], _ = k.Record()
	}
	b, _ := json.Marshal(records)
	path := filepath.Join(t.TempDir(), "records.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := dkimpy(t, sigs+interopMessage, "verify", path); out != "pass\npass\n" {
		t.Errorf("dkimpy says %q for:\n%s", out, sigs)
	}
	// And fails once the body changes.
	if out := dkimpy(t, sigs+strings.Replace(interopMessage, "Hello", "Hullo", 1), "verify", path); out != "fail\nfail\n" {
		t.Errorf("dkimpy on an altered body says %q", out)
	}
}

// Messages dkimpy signed (ed25519-sha256 and rsa-sha256) verify here.
func TestDkimpySignedVerifies(t *testing.T) {
	dir := t.TempDir()
	edFile := filepath.Join(dir, "ed.key")
	os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(edKey.Seed())), 0o600)
	rsaFile := filepath.Join(dir, "rsa.pem")
	os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSA(t))}), 0o600)

	msg := interopMessage
	sigRSA := dkimpy(t, msg, "sign", "rsa", "example.org", rsaFile, "rsa-sha256")
	sigEd := dkimpy(t, msg, "sign", "ed", "example.org", edFile, "ed25519-sha256")
	zone := dnstest.Zone(t,
		txt("ed._domainkey.example.org.", edRecord()),
		txt("rsa._domainkey.example.org.", rsaRecord(t)),
		txt("_dmarc.example.org.", "v=DMARC1; p=reject"),
	)
	c := New(Config{Hostname: "mx.postern.test", Resolver: dnsx.New(dnstest.Start(t, zone), 2*time.Second)})
	res := check(t, c, "x.test", "alice@example.org", sigEd+sigRSA+msg)
	if len(res.DKIM) != 2 || res.DKIM[0].Result != "pass" || res.DKIM[1].Result != "pass" || res.DMARC.Result != "pass" {
		t.Errorf("%s", res.Header)
	}
	if res.DKIM[0].Algorithm != "ed25519-sha256" || res.DKIM[1].Algorithm != "rsa-sha256" {
		t.Errorf("%+v", res.DKIM)
	}
}
