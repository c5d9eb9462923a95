package e2e

import (
	"regexp"
	"strings"
	"testing"
)

var queuedRe = regexp.MustCompile(`^2\.0\.0 OK: queued as (\S+)$`)

// queueID checks a 250 reply to DATA and returns its queue id.
func queueID(t *testing.T, r *reply) string {
	t.Helper()
	if r == nil {
		t.Fatal("no reply to DATA (DATA was not sent)")
	}
	m := queuedRe.FindStringSubmatch(r.Text)
	if r.Code != 250 || m == nil {
		t.Fatalf("DATA reply = %d %q, want 250 \"2.0.0 OK: queued as <qid>\"", r.Code, r.Text)
	}
	return m[1]
}

func wantCode(t *testing.T, what string, r *reply, code int, enhanced string) {
	t.Helper()
	if r == nil {
		t.Fatalf("%s: no reply, want %d %s", what, code, enhanced)
	}
	if r.Code != code || !strings.HasPrefix(r.Text, enhanced+" ") {
		t.Fatalf("%s: reply %d %q, want %d %s ...", what, r.Code, r.Text, code, enhanced)
	}
}

// wantOne returns the only message of msgs, failing otherwise.
func wantOne(t *testing.T, who string, msgs []mboxMessage) mboxMessage {
	t.Helper()
	if len(msgs) != 1 {
		var subjects []string
		for _, m := range msgs {
			subjects = append(subjects, m.Header.Get("Subject"))
		}
		t.Fatalf("%s has %d messages %q, want exactly 1", who, len(msgs), subjects)
	}
	return msgs[0]
}

// mxWithUsers starts a server for domain example.test with the given users.
func mxWithUsers(t *testing.T, limits string, users ...string) *server {
	t.Helper()
	s := newServer(t, limits)
	s.addDomain("example.test")
	for _, u := range users {
		s.addUser(u + "@example.test")
	}
	return s
}

func TestLocalDeliverySmtplib(t *testing.T) {
	python(t)
	s := mxWithUsers(t, "", "alice")
	s.start()

	r := smtplibSend(t, s, "--from", "sender@example.org", "--to", "alice@example.test",
		"--subject", "hello alice", "--message-id", "hello-1@example.org",
		"--body", "First line of the body.\nFrom the start of a line, quoted in mboxrd.\n")
	if r.Error != "" {
		t.Fatalf("smtplib: %s", r.Error)
	}
	if r.Banner.Code != 220 || !strings.Contains(r.Banner.Text, hostname) {
		t.Errorf("banner = %d %q, want 220 naming %s", r.Banner.Code, r.Banner.Text, hostname)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE", "CHUNKING", "STARTTLS"} {
		if !hasExtension(r.EHLO.Text, ext) {
			t.Errorf("EHLO does not advertise %s:\n%s", ext, r.EHLO.Text)
		}
	}
	wantCode(t, "MAIL", r.Mail, 250, "2.0.0")
	wantCode(t, "RCPT alice", &r.Rcpt[0], 250, "2.0.0")
	qid := queueID(t, r.Data)

	m := wantOne(t, "alice's INBOX", s.export("alice@example.test", ""))
	if !strings.HasPrefix(m.FromLine, "From sender@example.org ") {
		t.Errorf("mbox separator = %q, want the envelope sender", m.FromLine)
	}
	// Return-Path and Delivered-To are prepended at delivery, before the
	// trace header added at reception (RFC 5321 4.4).
	wantPrefix := "Return-Path: <sender@example.org>\nDelivered-To: alice@example.test\nReceived: "
	if !strings.HasPrefix(m.Raw, wantPrefix) {
		t.Errorf("message starts %.200q, want %q", m.Raw, wantPrefix)
	}
	rcv := m.Header.Get("Received")
	for _, want := range []string{"from client.example.org", "[127.0.0.1]", "by " + hostname, "with ESMTP id " + qid, "for <alice@example.test>"} {
		if !strings.Contains(rcv, want) {
			t.Errorf("Received: %q lacks %q", rcv, want)
		}
	}
	if strings.Contains(rcv, "TLS") || strings.Contains(rcv, "ESMTPS") {
		t.Errorf("Received: %q mentions TLS on a plain connection", rcv)
	}
	if got := m.Header.Get("Subject"); got != "hello alice" {
		t.Errorf("Subject = %q", got)
	}
	if got := m.Header.Get("Message-Id"); got != "<hello-1@example.org>" {
		t.Errorf("Message-ID = %q", got)
	}
	wantBody := "First line of the body.\nFrom the start of a line, quoted in mboxrd.\n-- end of test message --\n"
	if m.Body != wantBody {
		t.Errorf("body = %q, want %q", m.Body, wantBody)
	}
	if n := s.mailboxCount("alice@example.test", "INBOX"); n != 1 {
		t.Errorf("mailbox list: INBOX has %d messages, want 1", n)
	}

	for _, id := range []string{qid, "hello-1@example.org"} {
		tr := s.cli("", "trace", id)
		for _, want := range []string{qid, "received", "from=<sender@example.org>", "delivered", "to=<alice@example.test>"} {
			if !strings.Contains(tr, want) {
				t.Errorf("postern trace %s lacks %q:\n%s", id, want, tr)
			}
		}
	}
}

// hasExtension reports whether an EHLO reply text lists keyword ext.
func hasExtension(ehlo, ext string) bool {
	for _, line := range strings.Split(ehlo, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

func TestLocalDeliverySwaks(t *testing.T) {
	swaks(t)
	s := mxWithUsers(t, "", "alice")
	s.start()

	out, code := runSwaks(t, "--server", "127.0.0.1:"+itoa(s.smtpPort), "--helo", "swaks.example.org",
		"--from", "swaks-sender@example.org", "--to", "alice@EXAMPLE.Test",
		"--header", "Subject: hello from swaks", "--header", "Message-Id: <swaks-1@example.org>",
		"--body", "Body sent by swaks.")
	if code != 0 {
		t.Fatalf("swaks exit status %d, want 0:\n%s", code, out)
	}
	if !regexp.MustCompile(`(?m)^<-  250 2\.0\.0 OK: queued as \S+`).MatchString(out) {
		t.Fatalf("swaks transcript has no 250 queued reply:\n%s", out)
	}
	m := wantOne(t, "alice's INBOX", s.export("alice@example.test", ""))
	if got := m.Header.Get("Subject"); got != "hello from swaks" {
		t.Errorf("Subject = %q", got)
	}
	if got := m.Header.Get("Return-Path"); got != "<swaks-sender@example.org>" {
		t.Errorf("Return-Path = %q", got)
	}
	if got := m.Header.Get("Delivered-To"); got != "alice@example.test" {
		t.Errorf("Delivered-To = %q", got)
	}
	if rcv := m.Header.Get("Received"); !strings.Contains(rcv, "from swaks.example.org") || !strings.Contains(rcv, "by "+hostname) {
		t.Errorf("Received = %q, want from swaks.example.org by %s", rcv, hostname)
	}
	if !strings.Contains(m.Body, "Body sent by swaks.") {
		t.Errorf("body = %q", m.Body)
	}
}

func TestAliasDeliversToEveryTarget(t *testing.T) {
	python(t)
	s := mxWithUsers(t, "", "alice", "bob")
	s.cli("", "alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
	s.start()

	r := smtplibSend(t, s, "--to", "team@example.test", "--subject", "to the team", "--message-id", "team-1@example.org")
	qid := queueID(t, r.Data)
	for _, u := range []string{"alice", "bob"} {
		addr := u + "@example.test"
		m := wantOne(t, u+"'s INBOX", s.export(addr, ""))
		if got := m.Header.Get("Delivered-To"); got != addr {
			t.Errorf("%s: Delivered-To = %q, want %s", u, got, addr)
		}
		if got := m.Header.Get("Message-Id"); got != "<team-1@example.org>" {
			t.Errorf("%s: Message-ID = %q", u, got)
		}
		if rcv := m.Header.Get("Received"); !strings.Contains(rcv, "id "+qid) || !strings.Contains(rcv, "for <team@example.test>") {
			t.Errorf("%s: Received = %q, want id %s for <team@example.test>", u, rcv, qid)
		}
	}

	// A user named both directly and through the alias gets one copy.
	r = smtplibSend(t, s, "--to", "team@example.test", "--to", "alice@example.test", "--subject", "team and alice")
	queueID(t, r.Data)
	if n := len(bySubject(s.export("alice@example.test", ""), "team and alice")); n != 1 {
		t.Errorf("alice got %d copies of a message sent to her and to her alias, want 1", n)
	}
	if n := len(bySubject(s.export("bob@example.test", ""), "team and alice")); n != 1 {
		t.Errorf("bob got %d copies, want 1", n)
	}
}

func TestUnknownUserRejected(t *testing.T) {
	s := mxWithUsers(t, "", "alice")
	s.start()

	t.Run("smtplib", func(t *testing.T) {
		python(t)
		r := smtplibSend(t, s, "--to", "nobody@example.test", "--subject", "to nobody")
		wantCode(t, "RCPT nobody", &r.Rcpt[0], 550, "5.1.1")
		if r.Data != nil {
			t.Errorf("DATA was accepted for an unknown user: %+v", r.Data)
		}

		// One good and one unknown recipient: the message reaches the good one.
		r = smtplibSend(t, s, "--to", "alice@example.test", "--to", "nobody@example.test", "--subject", "mixed")
		wantCode(t, "RCPT alice", &r.Rcpt[0], 250, "2.0.0")
		wantCode(t, "RCPT nobody", &r.Rcpt[1], 550, "5.1.1")
		queueID(t, r.Data)
		if n := len(bySubject(s.export("alice@example.test", ""), "mixed")); n != 1 {
			t.Errorf("alice has %d copies of the message to her and an unknown user, want 1", n)
		}
	})
	t.Run("swaks", func(t *testing.T) {
		swaks(t)
		out, code := runSwaks(t, "--server", "127.0.0.1:"+itoa(s.smtpPort), "--from", "a@example.org",
			"--to", "nobody@example.test", "--header", "Subject: swaks to nobody")
		if code != 24 || !strings.Contains(out, "<** 550 5.1.1 ") {
			t.Errorf("swaks to an unknown user: exit %d, want 24 (no RCPT accepted) with 550 5.1.1:\n%s", code, out)
		}
	})
	for _, m := range s.export("alice@example.test", "") {
		if subj := m.Header.Get("Subject"); subj != "mixed" {
			t.Errorf("alice's INBOX holds %q, sent to an unknown user", subj)
		}
	}
}

func TestRelayDenied(t *testing.T) {
	s := mxWithUsers(t, "", "alice")
	s.start()

	t.Run("smtplib", func(t *testing.T) {
		python(t)
		for _, to := range []string{"someone@elsewhere.example", "someone@[127.0.0.1]"} {
			r := smtplibSend(t, s, "--to", to, "--subject", "relay attempt")
			wantCode(t, "RCPT "+to, &r.Rcpt[0], 554, "5.7.1")
			if !strings.Contains(strings.ToLower(r.Rcpt[0].Text), "relay") {
				t.Errorf("relay refusal %q does not say relay", r.Rcpt[0].Text)
			}
			if r.Data != nil {
				t.Errorf("DATA was accepted for %s: %+v", to, r.Data)
			}
		}
	})
	t.Run("swaks", func(t *testing.T) {
		swaks(t)
		// A local sender address proves nothing on the MX port.
		out, code := runSwaks(t, "--server", "127.0.0.1:"+itoa(s.smtpPort), "--from", "alice@example.test",
			"--to", "victim@elsewhere.example", "--header", "Subject: swaks relay attempt")
		if code != 24 || !strings.Contains(out, "<** 554 5.7.1 ") {
			t.Errorf("swaks relay attempt: exit %d, want 24 (no RCPT accepted) with 554 5.7.1:\n%s", code, out)
		}
	})
	if msgs := s.export("alice@example.test", ""); len(msgs) != 0 {
		t.Errorf("alice has %d messages after relay attempts, want 0", len(msgs))
	}
}
