package e2e

import (
	"strings"
	"testing"
)

// TestBareLineEndsRejected sends message data byte for byte over a raw
// socket. Only <CRLF>.<CRLF> ends DATA and a bare CR or LF anywhere in the
// data gets 554 5.6.0 with nothing stored (RFC 5321 2.3.8, 4.1.1.4); the
// session stays usable, so a clean message after it is accepted. The
// smuggling cases would, on a server that takes a bare line end as a line
// end, answer 250 early and run the hidden second transaction.
func TestBareLineEndsRejected(t *testing.T) {
	python(t)
	s := mxWithUsers(t, "", "alice", "bob")
	s.start()

	cases := []struct {
		name string
		data string
	}{
		{"bare LF", "Subject: bare lf\r\n\r\nline one\nline two\r\n.\r\n"},
		{"bare CR", "Subject: bare cr\r\n\r\nline one\rline two\r\n.\r\n"},
		{"bare LF in header", "Subject: bare lf header\nX-Other: 1\r\n\r\nbody\r\n.\r\n"},
		{"bare CR at end", "Subject: bare cr end\r\n\r\nbody\r\r\n.\r\n"},
		{"smuggling LF.CRLF", "Subject: smuggle 1\r\n\r\nouter\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled 1\r\n\r\nevil\r\n.\r\n"},
		{"smuggling CRLF.LF", "Subject: smuggle 2\r\n\r\nouter\r\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled 2\r\n\r\nevil\r\n.\r\n"},
		{"smuggling LF.LF", "Subject: smuggle 3\r\n\r\nouter\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled 3\r\n\r\nevil\r\n.\r\n"},
		{"bare CR after leading dot", "Subject: dot cr\r\n\r\nbefore\r\n.\rafter\r\n.\r\n"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clean := "clean after " + itoa(i)
			r := rawDialogue(t, s,
				rawStep{"EHLO raw.example.org\r\n", 1},
				rawStep{"MAIL FROM:<raw@example.org>\r\n", 1},
				rawStep{"RCPT TO:<alice@example.test>\r\n", 1},
				rawStep{"DATA\r\n", 1},
				rawStep{tc.data, 1},
				rawStep{"MAIL FROM:<raw@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n", 3},
				rawStep{"Subject: " + clean + "\r\n\r\nclean body\r\n.\r\n", 1},
				rawStep{"QUIT\r\n", 1},
			)
			if len(r.Replies) == 4 && r.Timeout {
				t.Fatalf("no reply within 5 s to the data %q: the server did not take its final <CRLF>.<CRLF> as the end of DATA", tc.data)
			}
			if len(r.Replies) < 5 {
				t.Fatalf("session ended early (closed=%v, timeout=%v) with replies %q", r.Closed, r.Timeout, r.Replies)
			}
			if got := last(r.Replies[3]); !strings.HasPrefix(got, "354") {
				t.Fatalf("DATA got %q, want 354", got)
			}
			if got := last(r.Replies[4]); !strings.HasPrefix(got, "554 5.6.0 ") {
				t.Errorf("message with %s: got %q, want 554 5.6.0", tc.name, got)
			}
			want := []string{"250", "250", "354", "250 2.0.0 OK: queued as ", "221"}
			for j, w := range want {
				k := 5 + j
				if k >= len(r.Replies) || !strings.HasPrefix(last(r.Replies[k]), w) {
					t.Fatalf("after the rejected message, reply %d = %q, want %q...; all replies %q", k, at(r.Replies, k), w, r.Replies)
				}
			}
			inbox := s.export("alice@example.test", "")
			if m := wantOne(t, "alice's INBOX with "+clean, bySubject(inbox, clean)); m.Body != "clean body\n" {
				t.Errorf("clean message body = %q", m.Body)
			}
			subject := strings.TrimPrefix(tc.data[:strings.IndexAny(tc.data, "\r\n")], "Subject: ")
			for _, m := range bySubject(inbox, subject) {
				t.Errorf("alice's INBOX holds the refused message %q, body %q", subject, m.Body)
			}
			for _, m := range s.export("bob@example.test", "") {
				t.Errorf("bob's INBOX holds a smuggled message %q", m.Header.Get("Subject"))
			}
		})
	}
}

func last(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

func at(replies [][]string, i int) string {
	if i >= len(replies) {
		return "(none)"
	}
	return last(replies[i])
}
