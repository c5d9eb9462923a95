package msgauth

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

func testKeyStore(t *testing.T) *KeyStore {
	ks := NewKeyStore(filepath.Join(t.TempDir(), "dkim"))
	ks.now = func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }
	return ks
}

func TestKeyStoreRotation(t *testing.T) {
	ks := testKeyStore(t)
	if keys, err := ks.Keys("example.org"); err != nil || len(keys) != 0 {
		t.Fatalf("%v %v", keys, err)
	}
	keys, err := ks.Ensure("Example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Selector != "p202611a" || keys[0].Algorithm() != "ed25519" || keys[1].Selector != "p202611b" || keys[1].Algorithm() != "rsa" {
		t.Fatalf("first pair: %+v", keys)
	}
	fi, err := os.Stat(filepath.Join(ks.dir, "example.org", "p202611b.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	again, _ := ks.Ensure("example.org")
	if again[0].Selector != "p202611a" {
		t.Errorf("Ensure made new keys: %+v", again)
	}
	// Rotation: a new active pair; the old stays published.
	if _, err := ks.Rotate("example.org"); err != nil {
		t.Fatal(err)
	}
	all, err := NewKeyStore(ks.dir).Keys("example.org") // from disk
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range all {
		got = append(got, k.Selector+map[bool]string{true: "+", false: "-"}[k.Active])
	}
	if strings.Join(got, " ") != "p202611c+ p202611d+ p202611a- p202611b-" {
		t.Errorf("after rotation: %v", got)
	}
	gone, err := ks.Retire("example.org")
	if err != nil || strings.Join(gone, " ") != "p202611a p202611b" {
		t.Errorf("retired %v %v", gone, err)
	}
	all, _ = ks.Keys("example.org")
	if len(all) != 2 || !all[0].Active || !all[1].Active {
		t.Errorf("after retire: %+v", all)
	}
	if _, err := ks.Keys("../etc"); err == nil {
		t.Error("a domain with a slash was accepted")
	}
}

func TestSignVerifies(t *testing.T) {
	ks := testKeyStore(t)
	s := &Signer{Keys: ks, IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }}
	msg := "From: Alice <alice@news.example.org>\r\nTo: bob@remote.test\r\nSubject: signed\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n" +
		"Message-ID: <1@example.org>\r\n\r\nHello Bob,\r\n\r\n.with a dot\r\n"
	sigs, err := s.Sign(context.Background(), "alice@news.example.org", strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(sigs, "DKIM-Signature:") != 2 || !strings.HasSuffix(sigs, "\r\n") {
		t.Fatalf("signatures: %q", sigs)
	}
	keys, _ := ks.Keys("example.org")
	records := map[string]string{}
	var zone []string
	for _, k := range keys {
		rec, err := k.Record()
		if err != nil {
			t.Fatal(err)
		}
		records[k.Name()] = rec
		zone = append(zone, txt(k.Name()+".", rec))
	}
	// go-msgauth's verifier against the published records.
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(sigs+msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}})
	if err != nil || len(verifs) != 2 {
		t.Fatalf("%v %v", verifs, err)
	}
	for _, v := range verifs {
		if v.Err != nil || v.Domain != "example.org" {
			t.Errorf("verification %+v", v)
		}
	}
	// And through our checker and DNS: dkim=pass twice, DMARC aligned.
	zone = append(zone, txt("_dmarc.example.org.", "v=DMARC1; p=reject"))
	c := New(Config{Hostname: "mx.postern.test", Resolver: dnsx.New(dnstest.Start(t, dnstest.Zone(t, zone...)), 2*time.Second)})
	res := check(t, c, "x.test", "alice@news.example.org", sigs+msg)
	if res.DMARC.Result != "pass" || len(res.DKIM) != 2 || res.DKIM[0].Result != "pass" || res.DKIM[1].Result != "pass" {
		t.Errorf("%s", res.Header)
	}
	// Adding a second From breaks the (oversigned) signatures.
	res = check(t, c, "x.test", "alice@news.example.org", sigs+"From: <mallory@example.org>\r\n"+msg)
	if res.DKIM[0].Result == "pass" {
		t.Errorf("added From still passes: %s", res.Header)
	}

	// Mail of other domains is not signed.
	if sigs, err := s.Sign(context.Background(), "x@remote.test", strings.NewReader("From: <x@remote.test>\r\n\r\nhi\r\n")); err != nil || sigs != "" {
		t.Errorf("remote: %q %v", sigs, err)
	}
	// A From of another domain, envelope sender local: signed by the sender's domain.
	sigs, err = s.Sign(context.Background(), "bounce@example.org", strings.NewReader("From: <x@remote.test>\r\n\r\nhi\r\n"))
	if err != nil || !strings.Contains(sigs, "d=example.org") {
		t.Errorf("envelope: %q %v", sigs, err)
	}
}

// Mail that came in on the MX unauthenticated is never signed, even with
// the From of a hosted domain; submitted mail and local mail are.
func TestSignOnlyAuthenticatedOrLocal(t *testing.T) {
	s := &Signer{Keys: testKeyStore(t), Hostname: "mail.example.org",
		IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }}
	body := "From: <ceo@example.org>\r\nSubject: x\r\n\r\nhi\r\n"
	for received, signed := range map[string]bool{
		"": true, // a DSN made here
		"Received: from x ([192.0.2.1])\r\n\tby mail.example.org with ESMTPSA id 1; date\r\n":                    true,
		"Received: from x ([192.0.2.1])\r\n\tby mail.example.org with ESMTPA id 1; date\r\n":                     true,
		"Received: from x ([192.0.2.1])\r\n\tby mail.example.org with ESMTP id 1; date\r\n":                      false,
		"Received: from x ([192.0.2.1])\r\n\tby Mail.Example.org with ESMTPS id 1\r\n\t(using TLS1.3); date\r\n": false,
		"Received: from x by other.example with ESMTP; date\r\n":                                                 true,
	} {
		sigs, err := s.Sign(context.Background(), "ceo@example.org", strings.NewReader(received+body))
		if err != nil {
			t.Fatal(err)
		}
		if (sigs != "") != signed {
			t.Errorf("%q: signed %v, want %v", received, sigs != "", signed)
		}
	}
}
