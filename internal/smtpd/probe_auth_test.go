package smtpd_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
)

// TestHarvestingExemptsAuthenticated: an authenticated submission session
// may name any number of unknown local recipients (a user's typos) without
// being slowed or cut off, where an MX session gets 421 after 10.
func TestHarvestingExemptsAuthenticated(t *testing.T) {
	ts := newSubmission(t, func(c *smtpd.Config) {
		probeConfig(c)
		c.UnknownRcptDelay = 200 * time.Millisecond
		c.MaxRecipients = 100
	})
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
	c.expect("MAIL FROM:<alice@example.org>", 250, "2.0.0")
	start := time.Now()
	for i := 1; i <= 25; i++ {
		c.expect(fmt.Sprintf("RCPT TO:<typo%d@example.org>", i), 550, "5.1.1")
	}
	// Unexempted, replies 4 to 10 alone would wait 200ms x (1+...+7) = 5.6s.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("25 unknown recipients took %v: the authenticated session was slowed", d)
	}
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	// The IP is not cooling down either: a fresh MX-side count starts clean.
	c2 := ts.dial()
	c2.ehlo("client.example.net")
}
