package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestBDATSmuggling: BDAT chunks holding a false end of data that some
// servers honour (SMTP smuggling, CVE-2023-51764/51765/51766), followed by
// a second MAIL/RCPT/DATA transaction to bob. BDAT counts octets, so the
// text after the false end is message data, never commands: bob never gets
// a message, no command reply comes for the smuggled commands, and alice
// gets at most the first message (chunks with a bare CR or LF, or a NUL,
// are refused with 554 5.6.0), holding the smuggled text as plain data.
func TestBDATSmuggling(t *testing.T) {
	smuggled := "MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
	for _, seq := range []string{"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", "\r.\r", "\r\n\x00.\r\n"} {
		data := "Subject: first\r\n\r\nbody" + seq + smuggled
		cut := len("Subject: first\r\n\r\nbody") + 2 // inside the false end
		for _, split := range []struct {
			name   string
			chunks []string
		}{
			{"one chunk", []string{data}},
			{"split inside", []string{data[:cut], data[cut:]}},
			{"then empty last", []string{data, ""}},
		} {
			t.Run(fmt.Sprintf("%q/%s", seq, split.name), func(t *testing.T) {
				ts := newTestServer(t, nil)
				c := ts.dial()
				c.ehlo("client.example.net")
				c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
				c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
				// All chunks pipelined in one write, as an attacker would.
				var w strings.Builder
				for i, ch := range split.chunks {
					last := ""
					if i == len(split.chunks)-1 {
						last = " LAST"
					}
					fmt.Fprintf(&w, "BDAT %d%s\r\n%s", len(ch), last, ch)
				}
				c.write(w.String())
				var codes []int
				for range split.chunks {
					code, msg := c.reply()
					codes = append(codes, code)
					if code != 250 && code != 554 && code/100 != 5 {
						t.Errorf("BDAT reply %d %s", code, msg)
					}
					if code == 554 && !strings.HasPrefix(msg, "5.6.0 ") {
						t.Errorf("BDAT refused with %d %s, want 5.6.0 (bare CR or LF, or NUL)", code, msg)
					}
				}
				// The next reply answers our NOOP: no reply to a smuggled
				// MAIL, RCPT or DATA is waiting.
				if msg := c.expect("NOOP", 250, "2.0.0"); !strings.Contains(msg, "nothing") {
					t.Errorf("NOOP answered %q: a smuggled command was answered", msg)
				}
				c.expect("QUIT", 221, "2.0.0")
				got := ts.inboxCounts()
				if got["bob@example.org"] != 0 || got["carol@example.org"] != 0 || got["alice@example.org"] > 1 {
					t.Fatalf("replies %v, inbox counts %v: a second message was stored", codes, got)
				}
				bare := strings.Count(seq, "\r") != strings.Count(seq, "\r\n") || strings.Count(seq, "\n") != strings.Count(seq, "\r\n") ||
					strings.Contains(seq, "\x00")
				switch {
				case bare && (got["alice@example.org"] != 0 || codes[len(codes)-1] != 554):
					t.Errorf("replies %v, alice %d: a message with a bare CR or LF or a NUL was not refused", codes, got["alice@example.org"])
				case !bare && got["alice@example.org"] != 1:
					t.Errorf("replies %v: the first message was not stored", codes)
				case !bare:
					// One message, holding the smuggled text as data.
					m := ts.inbox("alice@example.org")[0]
					if !strings.Contains(m.Data, "\r\nSubject: first\r\n") || !strings.Contains(m.Data, "body"+seq+smuggled) {
						t.Errorf("stored message is not the whole first message: %q", m.Data)
					}
				}
				t.Logf("replies %v, alice %d", codes, got["alice@example.org"])
			})
		}
	}
}
