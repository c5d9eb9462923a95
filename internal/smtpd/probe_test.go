package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
)

func probeConfig(c *smtpd.Config) {
	c.UnknownRcptDelayAfter = 3
	c.UnknownRcptDelay = 30 * time.Millisecond
	c.UnknownRcptMax = 10
	c.UnknownRcptPerIP = 20
	c.UnknownRcptWindow = time.Minute
	c.UnknownRcptCooldown = time.Minute
}

// timed runs one RCPT and returns how long the reply took.
func timed(c *conn, rcpt string, code int, enhanced string) time.Duration {
	start := time.Now()
	c.expect("RCPT TO:<"+rcpt+">", code, enhanced)
	return time.Since(start)
}

// TestHarvestingSlowedThenClosed: after 3 unknown recipients every reply
// (for a known recipient too, so timing reveals nothing) is delayed more
// and more; beyond 10 the connection gets 421 and is closed.
func TestHarvestingSlowedThenClosed(t *testing.T) {
	ts := newTestServer(t, probeConfig)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	for i := 1; i <= 3; i++ {
		c.expect(fmt.Sprintf("RCPT TO:<guess%d@example.org>", i), 550, "5.1.1")
	}
	if d := timed(c, "guess4@example.org", 550, "5.1.1"); d < 30*time.Millisecond {
		t.Errorf("4th unknown recipient answered in %v, want at least 30ms", d)
	}
	if d := timed(c, "alice@example.org", 250, "2.0.0"); d < 30*time.Millisecond {
		t.Errorf("a known recipient after 4 unknown answered in %v: the delay must not tell them apart", d)
	}
	if d := timed(c, "guess5@example.org", 550, "5.1.1"); d < 60*time.Millisecond {
		t.Errorf("5th unknown recipient answered in %v, want a growing delay (at least 60ms)", d)
	}
	for i := 6; i <= 10; i++ {
		c.expect(fmt.Sprintf("RCPT TO:<guess%d@example.org>", i), 550, "5.1.1")
	}
	msg := c.expect("RCPT TO:<guess11@example.org>", 421, "4.7.0")
	if !strings.Contains(msg, "unknown recipients") {
		t.Errorf("421 text %q", msg)
	}
	c.expectClosed()
}

// TestHarvestingCoolsDownTheIP: more than 20 unknown recipients from one IP
// (over several connections) refuse that IP's connections for a while.
func TestHarvestingCoolsDownTheIP(t *testing.T) {
	ts := newTestServer(t, func(c *smtpd.Config) {
		probeConfig(c)
		c.UnknownRcptDelayAfter = 0 // keep this test fast
	})
	n := 0
	for conn := 0; conn < 2; conn++ {
		c := ts.dial()
		c.ehlo("client.example.net")
		c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
		for i := 0; i < 10; i++ {
			n++
			c.expect(fmt.Sprintf("RCPT TO:<guess%d@example.org>", n), 550, "5.1.1")
		}
		c.expect("QUIT", 221, "2.0.0")
	}
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<guess21@example.org>", 421, "4.7.0")
	c.expectClosed()
	_, greeting := ts.dialRaw()
	if !strings.HasPrefix(greeting, "421 4.7.0 ") {
		t.Fatalf("greeting during cool-down %q, want 421 4.7.0", greeting)
	}
}
