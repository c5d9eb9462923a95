package smtpd_test

import (
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/smtpd"
)

// TestPostmaster: RFC 5321 4.5.1 says every domain accepts postmaster, with
// or without a domain part; without a postmaster user or alias it reaches
// the domain's first account (alice here).
func TestPostmaster(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.send("sender@example.net", []string{"Postmaster"}, "Subject: bare\r\n\r\nto postmaster\r\n")
	c.send("sender@example.net", []string{"postmaster@EXAMPLE.org"}, "Subject: domain\r\n\r\nto postmaster\r\n")
	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 2 {
		t.Fatalf("alice (first account) has %d messages, want 2 for postmaster", len(msgs))
	}
	if got := ts.inboxCounts(); got["bob@example.org"] != 0 || got["carol@example.org"] != 0 {
		t.Errorf("postmaster mail reached others: %v", got)
	}
	// Other unknown names in a hosted domain are still refused.
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<webmaster@example.org>", 550, "5.1.1")
}

// TestMessageOfExactlyTheLimit: SIZE is the largest message accepted, over
// DATA as over BDAT; one byte more is refused.
func TestMessageOfExactlyTheLimit(t *testing.T) {
	const limit = 4096
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.MaxMessageBytes = limit })
	c := ts.dial()
	c.ehlo("client.example.net")
	head := "Subject: exact\r\n\r\n"
	line := strings.Repeat("x", 98) + "\r\n"
	body := strings.Repeat(line, (limit-len(head))/len(line))
	exact := head + body + strings.Repeat("y", limit-len(head)-len(body)-2) + "\r\n"
	if len(exact) != limit {
		t.Fatalf("test message is %d bytes", len(exact))
	}
	c.send("sender@example.net", []string{"alice@example.org"}, exact)
	over := head + body + strings.Repeat("y", limit-len(head)-len(body)-1) + "\r\n"
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(over + ".\r\n")
	c.expectReply(552, "5.3.4")
	if got := ts.inboxCounts(); got["alice@example.org"] != 1 || got["bob@example.org"] != 0 {
		t.Fatalf("inbox counts %v, want alice 1 (exact size), bob 0 (one byte over)", got)
	}
}
