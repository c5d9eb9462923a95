package e2e

import (
	"strings"
	"testing"
)

func TestMessageSizeLimit(t *testing.T) {
	python(t)
	s := mxWithUsers(t, `max_message_size = "64KiB"`, "alice")
	s.start()

	small := smtplibSend(t, s, "--to", "alice@example.test", "--subject", "fits", "--pad", "40000")
	if !strings.Contains(small.EHLO.Text, "SIZE 65536") {
		t.Errorf("EHLO does not advertise SIZE 65536:\n%s", small.EHLO.Text)
	}
	queueID(t, small.Data)

	// Too big, sent without declaring its size: refused after the data.
	big := smtplibSend(t, s, "--to", "alice@example.test", "--subject", "too big", "--pad", "100000")
	if big.Error != "" {
		t.Fatalf("smtplib: %s", big.Error)
	}
	if big.Size <= 65536 {
		t.Fatalf("test message is only %d bytes", big.Size)
	}
	wantCode(t, "DATA of a message over max_message_size", big.Data, 552, "5.3.4")

	// Too big and declared with SIZE=: refused at MAIL FROM (RFC 1870).
	declared := smtplibSend(t, s, "--size-param", "--to", "alice@example.test", "--subject", "too big, declared", "--pad", "100000")
	wantCode(t, "MAIL FROM with SIZE over the limit", declared.Mail, 552, "5.3.4")

	m := wantOne(t, "alice's INBOX", s.export("alice@example.test", ""))
	if got := m.Header.Get("Subject"); got != "fits" {
		t.Errorf("stored message has Subject %q, want only \"fits\"", got)
	}
}

func TestRecipientLimit(t *testing.T) {
	python(t)
	s := mxWithUsers(t, `max_recipients = 3`, "alice", "bob", "carol", "dave")
	s.start()

	r := smtplibSend(t, s, "--to", "alice@example.test", "--to", "bob@example.test",
		"--to", "carol@example.test", "--to", "dave@example.test", "--subject", "four recipients")
	if r.Error != "" {
		t.Fatalf("smtplib: %s", r.Error)
	}
	if len(r.Rcpt) != 4 {
		t.Fatalf("got %d RCPT replies, want 4", len(r.Rcpt))
	}
	for i := 0; i < 3; i++ {
		wantCode(t, "RCPT within the limit", &r.Rcpt[i], 250, "2.0.0")
	}
	wantCode(t, "RCPT over max_recipients", &r.Rcpt[3], 452, "4.5.3")
	queueID(t, r.Data)

	for _, u := range []string{"alice", "bob", "carol"} {
		m := wantOne(t, u+"'s INBOX", s.export(u+"@example.test", ""))
		if got := m.Header.Get("Subject"); got != "four recipients" {
			t.Errorf("%s: Subject = %q", u, got)
		}
	}
	if msgs := s.export("dave@example.test", ""); len(msgs) != 0 {
		t.Errorf("dave, refused with 452, has %d messages", len(msgs))
	}
}

func TestConnectionsPerIPLimit(t *testing.T) {
	python(t)
	s := mxWithUsers(t, `max_connections_per_ip = 3`)
	s.start()

	var r struct {
		Held         []string `json:"held"`
		Over         string   `json:"over"`
		OverClosed   bool     `json:"over_closed"`
		Quit         string   `json:"quit"`
		AfterRelease *string  `json:"after_release"`
		Attempts     int      `json:"attempts"`
	}
	runPython(t, &r, "", "connlimit.py", "--port", itoa(s.smtpPort), "--limit", "3")
	if len(r.Held) != 3 {
		t.Fatalf("held %d connections, want 3", len(r.Held))
	}
	for i, b := range r.Held {
		if !strings.HasPrefix(b, "220 ") {
			t.Errorf("connection %d within the limit got %q, want a 220 banner", i+1, b)
		}
	}
	if !strings.HasPrefix(r.Over, "421 4.7.0 ") {
		t.Errorf("connection over the per-IP limit got %q, want 421 4.7.0", r.Over)
	}
	if !r.OverClosed {
		t.Errorf("connection over the limit was left open after 421")
	}
	if !strings.HasPrefix(r.Quit, "221") {
		t.Errorf("QUIT on a held connection got %q", r.Quit)
	}
	if r.AfterRelease == nil {
		t.Errorf("no 220 banner in %d attempts after a connection was closed: the slot was not released", r.Attempts)
	}
}
