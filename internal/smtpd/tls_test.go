package smtpd_test

import (
	"crypto/tls"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/smtpd"
)

func TestEHLOExtensions(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	ext := c.ehlo("client.example.net")
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 1048576", "CHUNKING", "STARTTLS"} {
		if !contains(ext, want) {
			t.Errorf("EHLO does not advertise %s: %q", want, ext)
		}
	}
	for _, e := range ext {
		if strings.HasPrefix(e, "AUTH") {
			t.Errorf("the MX advertises %q; it must never offer AUTH", e)
		}
	}
	// Nor over TLS.
	c.startTLS(ts.clientTLS)
	ext = c.ehlo("client.example.net")
	for _, e := range ext {
		if strings.HasPrefix(e, "AUTH") || e == "STARTTLS" {
			t.Errorf("after STARTTLS, EHLO advertises %q", e)
		}
	}
	c.write("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
	if code, msg := c.reply(); code/100 != 5 {
		t.Errorf("AUTH: %d %s, want a 5xx refusal", code, msg)
	}
}

func TestEHLOWithoutTLSConfig(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.TLS = nil })
	c := ts.dial()
	if ext := c.ehlo("client.example.net"); contains(ext, "STARTTLS") {
		t.Errorf("STARTTLS advertised without a certificate: %q", ext)
	}
	c.expect("STARTTLS", 502, "5.5.1")
}

func TestHELO(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.expect("HELO client.example.net", 250, "")
	c.send("sender@example.net", []string{"alice@example.org"}, "Subject: helo\r\n\r\nhi\r\n")
	if n := len(ts.inbox("alice@example.org")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

// TestSTARTTLS delivers over STARTTLS with Go's SMTP client and checks the
// Received header records the TLS version and cipher.
func TestSTARTTLS(t *testing.T) {
	ts := newTestServer(t, nil)
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	cfg := ts.clientTLS.Clone()
	cfg.MinVersion = tls.VersionTLS13
	if err := c.StartTLS(cfg); err != nil {
		t.Fatal(err)
	}
	state, ok := c.TLSConnectionState()
	if !ok {
		t.Fatal("no TLS after STARTTLS")
	}
	if err := c.Mail("sender@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: secret\r\n\r\nover TLS\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	rec, body := checkTrace(t, msgs[0], "sender@example.net", "alice@example.org", "alice@example.org", msgs[0].QueueID)
	if rec[1] != "ESMTPS" {
		t.Errorf("Received says %q, want ESMTPS", rec[1])
	}
	want := "\n\t(using " + tls.VersionName(state.Version) + " with cipher " + tls.CipherSuiteName(state.CipherSuite) + ")"
	if rec[3] != want {
		t.Errorf("Received TLS details %q, want %q", rec[3], want)
	}
	if body != "Subject: secret\r\n\r\nover TLS\r\n" {
		t.Errorf("body %q", body)
	}
}

// TestSTARTTLSResetsState checks that a transaction begun before STARTTLS
// is forgotten, and that EHLO is required again (RFC 3207 4.2).
func TestSTARTTLSResetsState(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.startTLS(ts.clientTLS)
	c.expect("MAIL FROM:<sender@example.net>", 502, "5.5.1")
	c.ehlo("client.example.net")
	c.expect("DATA", 502, "5.5.1")
	c.send("sender@example.net", []string{"bob@example.org"}, "Subject: tls\r\n\r\nhi\r\n")
	got := ts.inboxCounts()
	if got["alice@example.org"] != 0 || got["bob@example.org"] != 1 {
		t.Errorf("inbox counts %v, want alice 0, bob 1", got)
	}
	c.expect("STARTTLS", 502, "5.5.1")
}

// TestSTARTTLSInjection checks that commands pipelined after STARTTLS in
// plaintext are never executed inside the TLS session (CVE-2011-0411).
func TestSTARTTLSInjection(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.write("STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
	code, msg := c.reply()
	if code/100 == 5 {
		// Refusing and closing is the strict answer (third_party/go-smtp).
		c.expectClosed()
		return
	}
	if code != 220 {
		t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(c.nc, ts.clientTLS)
	if err := tc.Handshake(); err != nil {
		// Closing the connection is a fine answer too.
		t.Logf("handshake after injected plaintext: %v", err)
		return
	}
	c.nc = tc
	c.tp = textproto.NewConn(tc)
	// Had the injected commands survived, their replies would come first.
	c.expect("NOOP", 250, "2.0.0")
	c.ehlo("client.example.net")
	c.expect("DATA", 502, "5.5.1")
}
