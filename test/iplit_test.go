package e2e

import (
	"testing"
)

// TestLocalIPLiteralsFromConfig: with [limits] local_ip_literals listing
// the server's address, smtplib's RCPT TO:<alice@[127.0.0.1]> reaches
// alice of the primary domain (the hostname's nearest hosted parent,
// e2e.test), an unknown user behind the literal gets 550 5.1.1, and a
// literal that is not listed stays refused as relaying (554 5.7.1).
func TestLocalIPLiteralsFromConfig(t *testing.T) {
	python(t)
	s := newServer(t, `local_ip_literals = ["127.0.0.1"]`)
	s.addDomain("e2e.test")
	s.addUser("alice@e2e.test")
	s.start()

	r := smtplibSend(t, s, "--from", "sender@example.org", "--to", "alice@[127.0.0.1]",
		"--to", "nobody@[127.0.0.1]", "--to", "alice@[127.0.0.2]", "--subject", "to an address literal")
	if r.Error != "" {
		t.Fatalf("smtplib: %s", r.Error)
	}
	if len(r.Rcpt) != 3 {
		t.Fatalf("got %d RCPT replies, want 3", len(r.Rcpt))
	}
	wantCode(t, "RCPT to a user at a listed literal", &r.Rcpt[0], 250, "2.0.0")
	wantCode(t, "RCPT to an unknown user at a listed literal", &r.Rcpt[1], 550, "5.1.1")
	wantCode(t, "RCPT to a literal not listed", &r.Rcpt[2], 554, "5.7.1")
	queueID(t, r.Data)
	m := wantOne(t, "alice's INBOX", s.export("alice@e2e.test", ""))
	if got := m.Header.Get("Subject"); got != "to an address literal" {
		t.Errorf("stored message has Subject %q", got)
	}
}
