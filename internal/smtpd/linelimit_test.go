package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
)

// testMaxLine is the MaxLineLength of newTestServer: the most octets a
// line may have, its CRLF included.
const testMaxLine = 2000

// TestCommandLineLength: a command line of exactly max_line_length octets
// (CRLF included) is read; one octet more gets 500 5.4.0 and the
// connection is closed, since the rest of the line cannot be told apart
// from the next command.
func TestCommandLineLength(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	pad := func(n int) string { // a NOOP line of n octets with its CRLF
		return "NOOP " + strings.Repeat("x", n-len("NOOP ")-2)
	}
	c.expect(pad(testMaxLine), 250, "2.0.0")
	c.expect(pad(testMaxLine+1), 500, "5.4.0")
	c.expectClosed()
}

// TestDataLineLength: a message line of exactly max_line_length octets
// (CRLF included) is stored, over DATA and BDAT; one octet more is refused
// with 554 5.6.0 and nothing is stored. Over DATA the connection is then
// closed (500 5.4.0: the rest of the line cannot be framed); over BDAT the
// chunk sizes keep the framing and the session goes on.
func TestDataLineLength(t *testing.T) {
	line := func(n int) string { return strings.Repeat("y", n-2) + "\r\n" }
	fits := "Subject: long line\r\n\r\n" + line(testMaxLine)
	over := "Subject: long line\r\n\r\n" + line(testMaxLine+1)

	t.Run("DATA", func(t *testing.T) {
		ts := newTestServer(t, nil)
		c := ts.dial()
		c.ehlo("client.example.net")
		c.send("sender@example.net", []string{"alice@example.org"}, fits)
		c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
		c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
		c.expect("DATA", 354, "")
		c.write(over + ".\r\n")
		if msg := c.expectReply(554, "5.6.0"); !strings.Contains(msg, fmt.Sprintf("longer than %d", testMaxLine)) {
			t.Errorf("554 reply %q does not give the limit", msg)
		}
		c.expectReply(500, "5.4.0")
		c.expectClosed()
		if got := ts.inboxCounts(); got["alice@example.org"] != 1 || got["bob@example.org"] != 0 {
			t.Errorf("inbox counts %v, want alice 1 (the line that fits) only", got)
		}
	})

	t.Run("BDAT", func(t *testing.T) {
		ts := newTestServer(t, nil)
		c := ts.dial()
		c.ehlo("client.example.net")
		c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
		c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(fits), fits))
		c.expectReply(250, "2.0.0")
		stored := len(ts.blobFiles())
		c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
		c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
		half := len(over) / 2 // the long line spans two chunks
		c.write(fmt.Sprintf("BDAT %d\r\n%s", half, over[:half]))
		c.expectReply(250, "2.0.0")
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(over)-half, over[half:]))
		c.expectReply(554, "5.6.0")
		eventually(t, "the refused message's file is removed", func() bool { return len(ts.blobFiles()) == stored })
		c.send("sender@example.net", []string{"carol@example.org"}, "Subject: next\r\n\r\nfine\r\n")
		if got := ts.inboxCounts(); got["alice@example.org"] != 1 || got["bob@example.org"] != 0 || got["carol@example.org"] != 1 {
			t.Errorf("inbox counts %v, want alice 1, bob 0, carol 1", got)
		}
	})
}

// TestCommandTimeout: a client silent for command_timeout between commands
// gets 421 4.4.2 and is disconnected (RFC 5321 4.5.3.2.7).
func TestCommandTimeout(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.CommandTimeout = 300 * time.Millisecond })
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	start := time.Now()
	c.expectReply(421, "4.4.2")
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("421 after %v, before the 300ms timeout", d)
	}
	c.expectClosed()
	ts.expectNothingStored()
}

// TestReceivedHopLimit: with MaxReceived n, a message arriving with n-1
// Received: fields (n with ours) is delivered; one with n is refused as a
// mail loop with 554 5.4.6, nothing is stored, and the session goes on.
func TestReceivedHopLimit(t *testing.T) {
	const n = 12
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.MaxReceived = n })
	c := ts.dial()
	c.ehlo("client.example.net")
	hops := func(k int) string {
		return strings.Repeat("Received: from a by b; Thu, 26 Nov 2026 10:00:00 +0000\r\n", k) + "Subject: hops\r\n\r\nx\r\n"
	}
	c.send("sender@example.net", []string{"alice@example.org"}, hops(n-1))
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(hops(n) + ".\r\n")
	if msg := c.expectReply(554, "5.4.6"); !strings.Contains(msg, fmt.Sprintf("(%d)", n+1)) {
		t.Errorf("554 reply %q does not count the Received fields", msg)
	}
	c.send("sender@example.net", []string{"carol@example.org"}, hops(0))
	if got := ts.inboxCounts(); got["alice@example.org"] != 1 || got["bob@example.org"] != 0 || got["carol@example.org"] != 1 {
		t.Errorf("inbox counts %v, want alice 1, bob 0, carol 1", got)
	}
}
