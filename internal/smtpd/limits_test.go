package smtpd_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/smtpd"
)

func TestMaxRecipients(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.MaxRecipients = 3 })
	c := ts.dial()
	ehlo := c.ehlo("client.example.net")
	if !contains(ehlo, "LIMITS RCPTMAX=3") {
		t.Errorf("EHLO does not advertise RCPTMAX=3: %q", ehlo)
	}
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<team@example.org>", 452, "4.5.3")
	c.expect("RCPT TO:<nobody@example.org>", 452, "4.5.3")
	// The accepted recipients still get the message (RFC 5321 4.5.3.1.10).
	c.expect("DATA", 354, "")
	c.write("Subject: many\r\n\r\nhi\r\n.\r\n")
	c.expectReply(250, "2.0.0")
	got := ts.inboxCounts()
	if got["alice@example.org"] != 1 || got["bob@example.org"] != 1 || got["carol@example.org"] != 1 {
		t.Errorf("inbox counts %v, want one each", got)
	}
	// The count starts again with each transaction.
	c.send("sender@example.net", []string{"alice@example.org", "bob@example.org", "carol@example.org"}, "Subject: again\r\n\r\nhi\r\n")
}

// TestMessageTooBig checks both ways a message can be too big: announced
// with SIZE= on MAIL, or found while reading it. Nothing may be stored and
// the session must stay usable.
func TestMessageTooBig(t *testing.T) {
	const limit = 4096
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.MaxMessageBytes = limit })
	c := ts.dial()
	ehlo := c.ehlo("client.example.net")
	if !contains(ehlo, fmt.Sprintf("SIZE %d", limit)) {
		t.Errorf("EHLO does not advertise SIZE %d: %q", limit, ehlo)
	}

	// Announced size.
	c.expect(fmt.Sprintf("MAIL FROM:<sender@example.net> SIZE=%d", limit+1), 552, "5.3.4")
	// The MAIL was refused: no transaction is open.
	c.expect("RCPT TO:<alice@example.org>", 502, "5.5.1")
	c.expect(fmt.Sprintf("MAIL FROM:<sender@example.net> SIZE=%d", limit/2), 250, "2.0.0")
	c.expect("RSET", 250, "2.0.0")

	// Actual size, over DATA.
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("z", 98)+"\r\n", 2*limit/100)
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(big + ".\r\n")
	c.expectReply(552, "5.3.4")
	ts.expectNothingStored()

	// Actual size, over BDAT in one chunk and over several.
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	c.expectReply(552, "5.3.4")
	ts.expectNothingStored()
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	half := big[:len(big)/2]
	c.write(fmt.Sprintf("BDAT %d\r\n%s", len(half), half))
	c.expectReply(250, "2.0.0")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(half), half))
	c.expectReply(552, "5.3.4")
	eventually(t, "the partial message file is removed", func() bool { return len(ts.blobFiles()) == 0 })
	ts.expectNothingStored()
	// go-smtp (v0.25.1 and third_party/go-smtp) races after an aborted
	// multi-chunk BDAT: its Data goroutine sends its result to the field
	// c.dataResult, which the next BDAT on the connection replaces, so a
	// late send can land in the next transaction (go test -race sees it).
	// Go on with a new connection until that is fixed.
	c.expect("QUIT", 221, "2.0.0")
	c = ts.dial()
	c.ehlo("client.example.net")

	// A message within the limit still goes through on the same session:
	// exactly the limit over BDAT, one byte less over DATA (go-smtp v0.25.1
	// refuses a DATA message of exactly the limit: its reader reports the
	// limit reached before it reads the end marker).
	small := sized("Subject: small\r\n\r\n", limit)
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(small), small))
	c.expectReply(250, "2.0.0")
	small2 := sized("Subject: small\r\n\r\n", limit-1)
	c.send("sender@example.net", []string{"alice@example.org"}, small2)
	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 2 {
		t.Fatalf("alice has %d messages, want 2", len(msgs))
	}
	for i, want := range []string{small, small2} {
		if _, body := splitHeader(t, msgs[i].Data, 3); body != want {
			t.Errorf("message %d: stored body differs from the message sent (%d bytes, want %d)", i, len(body), len(want))
		}
	}
	// One byte more is too big, over DATA and over BDAT.
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(sized("Subject: small\r\n\r\n", limit+1) + ".\r\n")
	c.expectReply(552, "5.3.4")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", limit+1, sized("Subject: small\r\n\r\n", limit+1)))
	c.expectReply(552, "5.3.4")
	if n := len(ts.inbox("alice@example.org")); n != 2 {
		t.Errorf("alice has %d messages, want 2", n)
	}
}

// sized pads header with CRLF-terminated lines to exactly n bytes.
func sized(header string, n int) string {
	r := n - len(header)
	lines, rem := r/72, r%72
	tail := ""
	switch rem {
	case 0:
	case 1: // no line is 1 byte long: lengthen one full line instead
		lines--
		tail = strings.Repeat("p", 71) + "\r\n"
	default:
		tail = strings.Repeat("p", rem-2) + "\r\n"
	}
	return header + strings.Repeat(strings.Repeat("p", 70)+"\r\n", lines) + tail
}

func TestSized(t *testing.T) {
	for n := 100; n < 300; n++ {
		s := sized("Subject: x\r\n\r\n", n)
		if len(s) != n || !strings.HasSuffix(s, "\r\n") || strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\r") {
			t.Fatalf("sized(%d) = %d bytes: %q", n, len(s), s)
		}
	}
}

// TestConnectionLimitPerIP checks that connections beyond the per-IP limit
// get a 421 4.7.0 greeting and are closed, and that a slot frees up when a
// connection ends.
func TestConnectionLimitPerIP(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.MaxConnectionsPerIP = 2 })
	c1 := ts.dial()
	c2 := ts.dial()
	c3, greeting := ts.dialRaw()
	if !strings.HasPrefix(greeting, "421 4.7.0 ") {
		t.Fatalf("third connection greeted %q, want 421 4.7.0", greeting)
	}
	c3.expectClosed()
	// The connections within the limit work.
	c1.ehlo("client.example.net")
	c2.ehlo("client.example.net")
	c1.send("sender@example.net", []string{"alice@example.org"}, "Subject: 1\r\n\r\n1\r\n")

	c1.expect("QUIT", 221, "2.0.0")
	c1.expectClosed()
	eventually(t, "a connection slot is free again", func() bool {
		c, greeting := ts.dialRaw()
		defer c.nc.Close()
		return strings.HasPrefix(greeting, "220 ")
	})
}

func TestConnectionLimitTotal(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.MaxConnections = 1; cfg.MaxConnectionsPerIP = 1 })
	ts.dial()
	_, greeting := ts.dialRaw()
	if !strings.HasPrefix(greeting, "421 4.7.0 ") {
		t.Fatalf("second connection greeted %q, want 421 4.7.0", greeting)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
