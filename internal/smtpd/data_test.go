package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
)

// TestBareLineEnds sends messages whose data holds a bare CR or LF, alone or
// in a sequence that some servers take for the end of data (SMTP
// smuggling). Each must be refused with 554 5.6.0, leave nothing stored and
// leave the session usable; nothing after the false end may be taken for a
// command.
func TestBareLineEnds(t *testing.T) {
	smuggled := "MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
	// Upstream go-smtp v0.25.1 failed the "CRLF dot CR" case (it dropped
	// the CR) and the "CR CRLF" and "trailing CR" cases (it missed the end
	// marker); third_party/go-smtp fixes both.
	for _, tc := range []struct{ name, data string }{
		{"bare LF", "Subject: x\r\n\r\nline one\nline two\r\n"},
		{"bare CR", "Subject: x\r\n\r\nline one\rline two\r\n"},
		{"bare LF in header", "Subject: x\nTo: y\r\n\r\nbody\r\n"},
		{"LF line ends", "Subject: x\n\nbody\n"},
		{"LF dot LF", "Subject: x\r\n\r\nbody\n.\n" + smuggled},
		{"CR dot CRLF", "Subject: x\r\n\r\nbody\r.\r\n" + smuggled},
		{"LF dot CRLF", "Subject: x\r\n\r\nbody\n.\r\n" + smuggled},
		{"CRLF dot LF", "Subject: x\r\n\r\nbody\r\n.\n" + smuggled},
		{"CRLF dot CR", "Subject: x\r\n\r\nbody\r\n.\r" + smuggled},
		{"CR CRLF", "Subject: x\r\n\r\nbody\r\r\n"},
		{"trailing CR", "Subject: x\r\n\r\nbody\r"},
		{"NUL then LF", "Subject: x\r\n\r\nbody\x00\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, nil)
			c := ts.dial()
			c.ehlo("client.example.net")
			c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
			c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
			c.expect("DATA", 354, "")
			data := tc.data
			if !strings.HasSuffix(data, "\r\n") {
				data += "\r\n"
			}
			c.write(data + ".\r\n")
			msg := c.expectReply(554, "5.6.0")
			if !strings.Contains(msg, "bare CR or LF") {
				t.Errorf("554 reply %q does not say why", msg)
			}
			ts.expectNothingStored()

			// The session is still usable and in a clean state.
			c.expect("RCPT TO:<alice@example.org>", 502, "5.5.1")
			qid := queueID(t, c.send("sender@example.net", []string{"carol@example.org"}, "Subject: next\r\n\r\nfine\r\n"))
			got := ts.inboxCounts()
			if got["carol@example.org"] != 1 || got["alice@example.org"] != 0 || got["bob@example.org"] != 0 {
				t.Errorf("inbox counts after the next transaction: %v, want carol 1 only", got)
			}
			_, body := checkTrace(t, ts.inbox("carol@example.org")[0], "sender@example.net", "carol@example.org", "carol@example.org", qid)
			if body != "Subject: next\r\n\r\nfine\r\n" {
				t.Errorf("next message body %q", body)
			}
		})
	}
}

// TestOnlyCRLFDotCRLFEnds checks that look-alikes of the end marker inside
// a CRLF-only message are data, and that the stored message is exact.
func TestOnlyCRLFDotCRLFEnds(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	wire := "Subject: dots\r\n\r\n..\r\n...\r\n.. \r\n..x\r\n"
	c.send("sender@example.net", []string{"alice@example.org"}, wire)
	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	_, body := splitHeader(t, msgs[0].Data, 3)
	if want := "Subject: dots\r\n\r\n.\r\n..\r\n. \r\n.x\r\n"; body != want {
		t.Errorf("body %q, want %q", body, want)
	}
}

func TestBDAT(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net> BODY=8BITMIME", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	part1 := "Subject: chunks\r\n\r\nfirst chunk\r\n.not stuffed\r\n"
	part2 := "second chunk, no final CRLF"
	c.write(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	c.expectReply(250, "2.0.0")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	qid := queueID(t, c.expectReply(250, "2.0.0"))
	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	_, body := checkTrace(t, msgs[0], "sender@example.net", "alice@example.org", "alice@example.org", qid)
	// BDAT data is not dot-stuffed; a final CRLF is added when missing.
	if want := part1 + part2 + "\r\n"; body != want {
		t.Errorf("body %q, want %q", body, want)
	}

	// An empty last chunk ends a message too.
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	part := "Subject: two\r\n\r\nbody\r\n"
	c.write(fmt.Sprintf("BDAT %d\r\n%sBDAT 0 LAST\r\n", len(part), part))
	c.expectReply(250, "2.0.0")
	c.expectReply(250, "2.0.0")
	if got := ts.inbox("bob@example.org"); len(got) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(got))
	}
}

func TestBDATBareLineEnd(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	data := "Subject: x\r\n\r\nbare\nLF\r\n"
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(data), data))
	c.expectReply(554, "5.6.0")
	ts.expectNothingStored()
	c.send("sender@example.net", []string{"alice@example.org"}, "Subject: ok\r\n\r\nok\r\n")
	if n := len(ts.inbox("alice@example.org")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

// TestPipelining sends a whole transaction in one write and reads the
// replies afterwards (RFC 2920).
func TestPipelining(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.write("MAIL FROM:<sender@example.net>\r\n" +
		"RCPT TO:<alice@example.org>\r\n" +
		"RCPT TO:<nobody@example.org>\r\n" +
		"RCPT TO:<bob@example.org>\r\n" +
		"DATA\r\n")
	c.expectReply(250, "2.0.0")
	c.expectReply(250, "2.0.0")
	c.expectReply(550, "5.1.1")
	c.expectReply(250, "2.0.0")
	c.expectReply(354, "")
	// The message, the next transaction and QUIT, again in one write.
	c.write("Subject: pipelined\r\n\r\none\r\n.\r\n" +
		"MAIL FROM:<sender@example.net>\r\n" +
		"RCPT TO:<carol@example.org>\r\n" +
		"DATA\r\n")
	c.expectReply(250, "2.0.0")
	c.expectReply(250, "2.0.0")
	c.expectReply(250, "2.0.0")
	c.expectReply(354, "")
	c.write("Subject: pipelined 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
	c.expectReply(250, "2.0.0")
	c.expectReply(221, "2.0.0")
	got := ts.inboxCounts()
	if got["alice@example.org"] != 1 || got["bob@example.org"] != 1 || got["carol@example.org"] != 1 {
		t.Errorf("inbox counts %v, want one each", got)
	}
	_, body := splitHeader(t, ts.inbox("carol@example.org")[0].Data, 3)
	if body != "Subject: pipelined 2\r\n\r\ntwo\r\n" {
		t.Errorf("carol's body %q", body)
	}
}

// TestDisconnectMidData checks that a client that goes away before the end
// of data leaves nothing stored, not even a partial file.
func TestDisconnectMidData(t *testing.T) {
	for _, bdat := range []bool{false, true} {
		t.Run(fmt.Sprintf("bdat=%v", bdat), func(t *testing.T) {
			ts := newTestServer(t, nil)
			c := ts.dial()
			c.ehlo("client.example.net")
			c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
			c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
			if bdat {
				c.write("BDAT 100000 LAST\r\nSubject: partial\r\n\r\n" + strings.Repeat("x", 70000))
			} else {
				c.expect("DATA", 354, "")
				c.write("Subject: partial\r\n\r\n" + strings.Repeat("x", 70000))
			}
			time.Sleep(50 * time.Millisecond) // let the server start the message file
			c.nc.Close()
			// The server notices the close, aborts, and releases the connection.
			eventually(t, "the partial message file is removed", func() bool { return len(ts.blobFiles()) == 0 })
			ts.expectNothingStored()
			// The server still serves others.
			c2 := ts.dial()
			c2.ehlo("client.example.net")
			c2.send("sender@example.net", []string{"alice@example.org"}, "Subject: whole\r\n\r\nwhole\r\n")
			if n := len(ts.inbox("alice@example.org")); n != 1 {
				t.Errorf("alice has %d messages, want 1", n)
			}
		})
	}
}

// TestLongLineInData checks that a line beyond the limit is refused for
// good (5xx, not a temporary error that the sender would retry for days)
// and the connection closed.
func TestLongLineInData(t *testing.T) {
	ts := newTestServer(t, nil) // MaxLineLength 2000
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write("Subject: long\r\n\r\n" + strings.Repeat("y", 3000) + "\r\n.\r\n")
	code, msg := c.reply()
	if code/100 != 5 {
		t.Errorf("reply %d %s, want a permanent 5xx", code, msg)
	}
	ts.expectNothingStored()
}

// TestDataTimeout checks that a client that stalls inside DATA is told so
// and disconnected: what it sends afterwards is message data, never
// commands.
func TestDataTimeout(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.DataTimeout = 300 * time.Millisecond })
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write("Subject: slow\r\n\r\nstart of a slow message\r\n")
	time.Sleep(600 * time.Millisecond)
	// The rest of the message happens to look like a transaction.
	c.write("MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n")
	code, msg := c.reply()
	if code != 421 {
		t.Errorf("reply %d %s, want 421", code, msg)
	}
	c.expectClosed()
	ts.expectNothingStored()
}

// TestSlowDataWithinTimeout checks that data_timeout bounds each stall, not
// the whole transfer: a message that keeps flowing is accepted however long
// it takes, over DATA and over BDAT.
func TestSlowDataWithinTimeout(t *testing.T) {
	ts := newTestServer(t, func(cfg *smtpd.Config) { cfg.DataTimeout = 300 * time.Millisecond })
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write("Subject: slow but steady\r\n\r\n")
	for i := 0; i < 8; i++ { // 800ms in all, never 300ms without data
		time.Sleep(100 * time.Millisecond)
		c.write(fmt.Sprintf("line %d\r\n", i))
	}
	c.write(".\r\n")
	c.expectReply(250, "2.0.0")

	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	for i := 0; i < 6; i++ {
		time.Sleep(100 * time.Millisecond)
		chunk := fmt.Sprintf("Line: %d\r\n", i)
		c.write(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
		c.expectReply(250, "2.0.0")
	}
	c.write("BDAT 0 LAST\r\n")
	c.expectReply(250, "2.0.0")
	if got := ts.inboxCounts(); got["alice@example.org"] != 1 || got["bob@example.org"] != 1 {
		t.Errorf("inbox counts %v, want alice 1 and bob 1", got)
	}
}
