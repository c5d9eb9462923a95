package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goTLSVersion turns Python's "TLSv1.3" into Go's tls.VersionName "TLS 1.3",
// the form Postern writes in Received headers.
func goTLSVersion(py string) string {
	return strings.Replace(py, "TLSv", "TLS ", 1)
}

func TestStartTLSSmtplib(t *testing.T) {
	python(t)
	s := mxWithUsers(t, "", "alice")
	s.start()

	r := smtplibSend(t, s, "--starttls", "--to", "alice@example.test", "--subject", "over tls")
	if r.Error != "" {
		t.Fatalf("smtplib with STARTTLS: %s", r.Error)
	}
	wantCode(t, "STARTTLS", r.StartTLS, 220, "2.0.0")
	if r.TLS == nil || !strings.HasPrefix(r.TLS.Version, "TLSv1.") {
		t.Fatalf("no TLS session after STARTTLS: %+v", r.TLS)
	}
	if r.TLS.Version != "TLSv1.2" && r.TLS.Version != "TLSv1.3" {
		t.Errorf("negotiated %s, want TLS 1.2 or 1.3", r.TLS.Version)
	}
	if hasExtension(r.EHLOTLS.Text, "STARTTLS") {
		t.Errorf("EHLO after TLS still advertises STARTTLS (RFC 3207 4.2):\n%s", r.EHLOTLS.Text)
	}
	qid := queueID(t, r.Data)

	m := wantOne(t, "alice's INBOX", s.export("alice@example.test", ""))
	rcv := m.Header.Get("Received")
	for _, want := range []string{"with ESMTPS id " + qid, "using " + goTLSVersion(r.TLS.Version), "cipher " + r.TLS.Cipher} {
		if !strings.Contains(rcv, want) {
			t.Errorf("Received: %q lacks %q", rcv, want)
		}
	}

	// No certificate was configured: a self-signed one is made in the data dir.
	der := readCertPEM(t, filepath.Join(s.dataDir, "tls", "cert.pem"))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("generated cert.pem: %v", err)
	}
	if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		t.Errorf("generated certificate has issuer %q, subject %q: not self-signed", cert.Issuer, cert.Subject)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("generated certificate is not signed by its own key: %v", err)
	}
	if err := cert.VerifyHostname(hostname); err != nil {
		t.Errorf("generated certificate does not name %s: %v", hostname, err)
	}
}

func readCertPEM(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("self-signed certificate: %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM CERTIFICATE", path)
	}
	return blk.Bytes
}

func TestStartTLSSwaks(t *testing.T) {
	swaks(t)
	s := mxWithUsers(t, "", "alice")
	s.start()
	send := func(subject string) {
		t.Helper()
		out, code := runSwaks(t, "--server", "127.0.0.1:"+itoa(s.smtpPort), "--tls",
			"--from", "tls-sender@example.org", "--to", "alice@example.test", "--header", "Subject: "+subject)
		if code != 0 {
			t.Fatalf("swaks --tls exit status %d, want 0:\n%s", code, out)
		}
		if !strings.Contains(out, "=== TLS started with cipher TLSv1.") {
			t.Fatalf("swaks --tls did not start TLS:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^<~  250 2\.0\.0 OK: queued as \S+`).MatchString(out) {
			t.Fatalf("swaks transcript has no 250 queued reply inside TLS:\n%s", out)
		}
	}
	send("swaks over tls")
	m := wantOne(t, "alice's INBOX", s.export("alice@example.test", ""))
	if rcv := m.Header.Get("Received"); !strings.Contains(rcv, "with ESMTPS") || !regexp.MustCompile(`using TLS 1\.[23] with cipher TLS_`).MatchString(rcv) {
		t.Errorf("Received: %q does not record the TLS session", rcv)
	}

	// The certificate is generated once: a restart keeps it.
	certPath := filepath.Join(s.dataDir, "tls", "cert.pem")
	before := readCertPEM(t, certPath)
	s.stop()
	s.start()
	if after := readCertPEM(t, certPath); !bytes.Equal(before, after) {
		t.Errorf("a restart replaced the self-signed certificate")
	}
	send("swaks over tls after restart")
	if n := len(s.export("alice@example.test", "")); n != 2 {
		t.Errorf("alice has %d messages after two sends, want 2", n)
	}
}

// TestSTARTTLSCommandInjection pipelines a plaintext command after
// STARTTLS in the same packet (CVE-2011-0411 style). The server must never
// act on it, neither in plaintext nor inside TLS; DESIGN.md also says the
// connection is then closed.
func TestSTARTTLSCommandInjection(t *testing.T) {
	python(t)
	s := mxWithUsers(t, "", "alice")
	s.start()
	var r struct {
		STARTTLS       []string   `json:"starttls"`
		Closed         bool       `json:"closed"`
		PlaintextAfter *string    `json:"plaintext_after"`
		TLSReplies     [][]string `json:"tls_replies"`
	}
	runPython(t, &r, "", "starttls_inject.py", "--port", itoa(s.smtpPort))
	// Postern refuses the STARTTLS outright (554 5.5.1) when plaintext is
	// already pipelined behind it; a 220 followed by a close is fine too.
	if rep := last(r.STARTTLS); strings.HasPrefix(rep, "554 5.5.1 ") {
		if !r.Closed || r.PlaintextAfter != nil {
			t.Fatalf("after refusing STARTTLS the connection must be closed with nothing more said; closed=%v, then %v", r.Closed, r.PlaintextAfter)
		}
		return
	} else if !strings.HasPrefix(rep, "220 ") {
		t.Fatalf("STARTTLS got %q, want 220 or 554 5.5.1", r.STARTTLS)
	}
	if r.PlaintextAfter != nil {
		t.Fatalf("the server answered the command pipelined after STARTTLS in plaintext: %q", *r.PlaintextAfter)
	}
	if r.Closed {
		return
	}
	// Still open: whatever happens, the injected MAIL FROM must not have
	// run inside TLS, so NOOP and QUIT get exactly their own two replies.
	var got []string
	for _, rep := range r.TLSReplies {
		got = append(got, last(rep))
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[1], "221 ") {
		t.Fatalf("inside TLS, NOOP and QUIT got replies %q, want [250 221]: the injected command was executed", got)
	}
	t.Errorf("plaintext pipelined after STARTTLS was discarded, but the connection was not closed (DESIGN.md: \"discarded and the connection closed\")")
}
