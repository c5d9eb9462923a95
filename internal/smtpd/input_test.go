package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestControlCharsInCommands sends CR, NUL and other control characters
// inside EHLO/HELO names, addresses and ESMTP parameters. Each line gets
// 501 with the enhanced code of the part that is wrong and a text naming
// the character; nothing of it is taken into the session, which stays
// usable, even after more such lines than go-smtp's error threshold.
func TestControlCharsInCommands(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	for _, tc := range []struct {
		line, enhanced, text string
	}{
		{"EHLO client\x00.example.net", "5.5.2", "EHLO argument contains a NUL character"},
		{"EHLO client\r.example.net", "5.5.2", "EHLO argument contains a CR character"},
		{"EHLO client.example.net\r", "5.5.2", "EHLO argument contains a CR character"}, // "\r\r\n" on the wire
		{"HELO client\x00", "5.5.2", "HELO argument contains a NUL character"},
	} {
		c.write(tc.line + "\r\n")
		if msg := c.expectReply(501, tc.enhanced); msg != tc.text {
			t.Errorf("%q: reply text %q, want %q", tc.line, msg, tc.text)
		}
	}
	// None of the refused names was taken: MAIL still needs a greeting.
	c.expect("MAIL FROM:<sender@example.net>", 502, "5.5.1")
	c.ehlo("client.example.net")
	for _, tc := range []struct {
		line, enhanced, text string
	}{
		{"MAIL FROM:<sen\x00der@example.net>", "5.1.7", "Sender address contains a NUL character"},
		{"MAIL FROM:<sender@example.net\r>", "5.1.7", "Sender address contains a CR character"},
		{"MAIL FROM:<\"sen\x00der\"@example.net>", "5.1.7", "Sender address contains a NUL character"},
		{"MAIL FROM:<\"sen\tder\"@example.net>", "5.1.7", "Sender address contains a 0x09 character"},
		{"MAIL FROM:<sen\x1bder@example.net>", "5.1.7", "Sender address contains a 0x1B character"},
		{"MAIL FROM:<sen\x00der@example.net", "5.1.7", "Sender address contains a NUL character"}, // unparsable too
		{"MAIL FROM:<sender@example.net> BODY=8BITMIME\x00", "5.5.4", "MAIL parameters contain a NUL character"},
		{"MAIL FROM:<sender@example.net> SIZE=100\rBODY=8BITMIME", "5.5.4", "MAIL parameters contain a CR character"},
		{"MAIL FROM:<sender@example.net>\r", "5.5.4", "MAIL parameters contain a CR character"},
	} {
		c.write(tc.line + "\r\n")
		if msg := c.expectReply(501, tc.enhanced); msg != tc.text {
			t.Errorf("%q: reply text %q, want %q", tc.line, msg, tc.text)
		}
	}
	c.expect("RCPT TO:<alice@example.org>", 502, "5.5.1") // no MAIL was taken
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	for _, tc := range []struct {
		line, enhanced, text string
	}{
		{"RCPT TO:<ali\x00ce@example.org>", "5.1.3", "Recipient address contains a NUL character"},
		{"RCPT TO:<alice@example.org\r>", "5.1.3", "Recipient address contains a CR character"},
		{"RCPT TO:<alice\x00@example.org>", "5.1.3", "Recipient address contains a NUL character"},
		{"RCPT TO:<\"ali\x7fce\"@example.org>", "5.1.3", "Recipient address contains a 0x7F character"},
		{"RCPT TO:<alice@example.org> NOTIFY=NEVER\x00", "5.5.4", "RCPT parameters contain a NUL character"},
		{"RCPT TO:<alice@example.org> \x00", "5.5.4", "RCPT parameters contain a NUL character"},
	} {
		c.write(tc.line + "\r\n")
		if msg := c.expectReply(501, tc.enhanced); msg != tc.text {
			t.Errorf("%q: reply text %q, want %q", tc.line, msg, tc.text)
		}
	}
	// Other commands: the line as a whole.
	c.expect("NOOP \x00", 501, "5.5.2")
	c.expect("VRFY ali\x00ce", 501, "5.5.2")
	c.expect("VRFY alice\r", 501, "5.5.2")

	// After all that (far more than three errors) the session works, and
	// only the clean recipient gets the message.
	c.expect("RCPT TO:<carol@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write("Subject: clean\r\n\r\nclean\r\n.\r\n")
	c.expectReply(250, "2.0.0")
	got := ts.inboxCounts()
	if got["alice@example.org"] != 0 || got["carol@example.org"] != 1 {
		t.Errorf("inbox counts %v, want carol 1 only", got)
	}
	m := ts.inbox("carol@example.org")[0]
	if strings.ContainsAny(m.Data, "\x00") || strings.Count(m.Data, "\r") != strings.Count(m.Data, "\r\n") {
		t.Errorf("stored message holds a NUL or bare CR: %q", m.Data)
	}
}

// TestNULInMessage sends messages with a NUL in the header or the body,
// over DATA and over BDAT (in one chunk and across chunks). Each is refused
// with 554 5.6.0, nothing of it is stored, and a later clean transaction
// on the same session is delivered.
func TestNULInMessage(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"header", "Subject: a\x00b\r\n\r\nbody\r\n"},
		{"body", "Subject: x\r\n\r\nline one\r\nli\x00ne two\r\n"},
		{"line start", "Subject: x\r\n\r\n\x00.\r\nafter\r\n"},
		{"last byte", "Subject: x\r\n\r\nbody\r\n\x00"},
	} {
		for _, mode := range []string{"DATA", "BDAT", "BDAT chunks"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				ts := newTestServer(t, nil)
				c := ts.dial()
				c.ehlo("client.example.net")
				c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
				c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
				var msg string
				switch mode {
				case "DATA":
					c.expect("DATA", 354, "")
					data := tc.data
					if !strings.HasSuffix(data, "\r\n") {
						data += "\r\n"
					}
					c.write(data + ".\r\n")
					msg = c.expectReply(554, "5.6.0")
				case "BDAT":
					c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(tc.data), tc.data))
					msg = c.expectReply(554, "5.6.0")
				case "BDAT chunks":
					// One byte at a time: the NUL is in a chunk of its own.
					for i := 0; i < len(tc.data)-1; i++ {
						c.write(fmt.Sprintf("BDAT 1\r\n%c", tc.data[i]))
						c.expectReply(250, "2.0.0")
					}
					c.write(fmt.Sprintf("BDAT 1 LAST\r\n%c", tc.data[len(tc.data)-1]))
					msg = c.expectReply(554, "5.6.0")
				}
				if !strings.Contains(msg, "NUL character") {
					t.Errorf("554 reply %q does not say why", msg)
				}
				eventually(t, "the refused message's file is removed", func() bool { return len(ts.blobFiles()) == 0 })
				ts.expectNothingStored()

				c.expect("RCPT TO:<alice@example.org>", 502, "5.5.1") // the transaction is over
				c.send("sender@example.net", []string{"carol@example.org"}, "Subject: next\r\n\r\nfine\r\n")
				if got := ts.inboxCounts(); got["carol@example.org"] != 1 || got["alice@example.org"] != 0 {
					t.Errorf("inbox counts after the next transaction: %v, want carol 1 only", got)
				}
			})
		}
	}
}

// TestFromHeaderPolicy checks the From: policy of the MX and of submission
// (see checkFrom): the MX refuses several From: fields or addresses with
// 550 5.7.1 and takes a message without From:; submission takes several
// addresses only with a one-address Sender:.
func TestFromHeaderPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		mx     string // "" accepted, else the enhanced code of the 550
		sub    string
	}{
		{"one address", "From: Alice <a@example.net>\r\n", "", ""},
		{"no From", "Subject: minimal\r\n", "", ""},
		{"empty group", "From: undisclosed:;\r\n", "", ""},
		{"two fields", "From: a@example.net\r\nFrom: b@example.com\r\n", "5.7.1", "5.6.0"},
		{"two fields, odd case and space", "From: a@example.net\r\nfROM : b@example.com\r\n", "5.7.1", "5.6.0"},
		{"two addresses", "From: a@example.net, b@example.com\r\n", "5.7.1", "5.6.0"},
		{"two addresses folded", "From: A <a@example.net>,\r\n  =?x-unknown?q?B?= <b@example.com>\r\n", "5.7.1", "5.6.0"},
		{"two addresses in a group", "From: g: a@example.net, b@example.com;\r\n", "5.7.1", "5.6.0"},
		{"two addresses, one malformed", "From: <a@example.net>, b@@example.com\r\n", "5.7.1", "5.6.0"},
		{"two addresses with Sender", "From: a@example.net, b@example.com\r\nSender: a@example.net\r\n", "5.7.1", ""},
		{"two addresses, two Senders", "From: a@example.net, b@example.com\r\nSender: a@example.net, b@example.com\r\n", "5.7.1", "5.6.0"},
		{"comma in a quoted name", "From: \"Doe, Jane\" <j@example.net>\r\n", "", ""},
		{"From in the body only", "Subject: x\r\n\r\nFrom: b@example.com\r\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.header
			if !strings.Contains(data, "\r\n\r\n") {
				data += "\r\nbody\r\n"
			}
			// The MX.
			ts := newTestServer(t, nil)
			c := ts.dial()
			c.ehlo("client.example.net")
			c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
			c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
			c.expect("DATA", 354, "")
			c.write(data + ".\r\n")
			if tc.mx == "" {
				c.expectReply(250, "2.0.0")
			} else {
				c.expectReply(550, tc.mx)
				ts.expectNothingStored()
				c.send("sender@example.net", []string{"alice@example.org"}, "From: s@example.net\r\n\r\nnext\r\n")
			}

			// Submission, as alice.
			ss := newSubmission(t, nil)
			s := ss.dial()
			s.ehlo("client.example.net")
			s.startTLS(ss.clientTLS)
			s.ehlo("client.example.net")
			s.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
			s.expect("MAIL FROM:<alice@example.org>", 250, "2.0.0")
			s.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
			s.expect("DATA", 354, "")
			s.write(data + ".\r\n")
			if tc.sub == "" {
				s.expectReply(250, "2.0.0")
			} else {
				s.expectReply(550, tc.sub)
				ss.expectNothingStored()
			}
		})
	}
}
