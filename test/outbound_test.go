package e2e

import (
	"bufio"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"
)

// deliveryTimeout bounds how long a queued message may take to reach the
// other instance on loopback.
const deliveryTimeout = 15 * time.Second

var (
	swaksQueuedRe = regexp.MustCompile(`250 2\.0\.0 OK: queued as (\S+)`)
	// replyQIDRe finds the remote's queue id in a delivered event's reply.
	replyQIDRe = regexp.MustCompile(`queued as ([A-Za-z0-9]+)`)
)

// checkRelayed checks the copy of a message that went from a.test to
// b.test: B's Received header on top (ESMTPS from mx.a.test, with TLS), A's
// below it (ESMTPSA: authenticated submission), and A's trace of it:
// received, queued, delivered to mx.b.test at 127.0.0.3 over TLS with B's
// 250. It returns B's queue id.
func checkRelayed(t *testing.T, pp peerPair, m mboxMessage, aQID, rcpt string) string {
	t.Helper()
	return checkRelayedTo(t, pp, m, aQID, rcpt, rcpt)
}

// checkRelayedTo is checkRelayed for a message sent to rcpt and delivered
// on b.test to deliveredTo (an alias's target).
func checkRelayedTo(t *testing.T, pp peerPair, m mboxMessage, aQID, rcpt, deliveredTo string) string {
	t.Helper()
	rcv := m.Header["Received"]
	if len(rcv) < 2 {
		t.Fatalf("%d Received headers, want 2 (b.test's and a.test's): %q", len(rcv), rcv)
	}
	for _, want := range []string{"from mx.a.test", "by mx.b.test with ESMTPS id ", "using TLS 1."} {
		if !strings.Contains(rcv[0], want) {
			t.Errorf("b.test's Received %q lacks %q", rcv[0], want)
		}
	}
	for _, want := range []string{"by mx.a.test with ESMTPSA id " + aQID, "using TLS 1."} {
		if !strings.Contains(rcv[1], want) {
			t.Errorf("a.test's Received %q lacks %q", rcv[1], want)
		}
	}
	if got := m.Header.Get("Return-Path"); got != "<alice@a.test>" {
		t.Errorf("Return-Path %q, want <alice@a.test>", got)
	}
	if got := m.Header.Get("Delivered-To"); got != deliveredTo {
		t.Errorf("Delivered-To %q, want %s", got, deliveredTo)
	}

	var delivered []traceEvent
	eventually(t, 5*time.Second, func() string {
		evs := pp.a.trace(aQID)
		delivered = eventsOf(evs, "delivered")
		if len(delivered) == 0 {
			return fmt.Sprintf("no delivered event in a.test's trace of %s: %v", aQID, evs)
		}
		return ""
	})
	evs := pp.a.trace(aQID)
	recv := eventsOf(evs, "received")
	if len(recv) != 1 || !strings.Contains(recv[0].Detail, "from=<alice@a.test>") || !strings.Contains(recv[0].Detail, `tls="TLS 1.`) ||
		!strings.Contains(recv[0].Detail, "user=alice@a.test") {
		t.Errorf("received events %v, want one from=<alice@a.test> with TLS and user=alice@a.test", recv)
	}
	if q := eventsOf(evs, "queued"); len(q) == 0 || !strings.Contains(q[0].Detail, "route=remote") {
		t.Errorf("queued events %v, want route=remote", q)
	}
	var d *traceEvent
	for i := range delivered {
		if strings.Contains(delivered[i].Detail, "to=<"+rcpt+">") {
			d = &delivered[i]
		}
	}
	if d == nil {
		t.Fatalf("no delivered event for %s in %v", rcpt, delivered)
	}
	for _, want := range []string{"host=mx.b.test", "ip=127.0.0.3", `tls="TLS 1.`, `reply="250 2.0.0`} {
		if !strings.Contains(d.Detail, want) {
			t.Errorf("delivered event %q lacks %q", d.Detail, want)
		}
	}
	mq := replyQIDRe.FindStringSubmatch(d.Detail)
	if mq == nil {
		t.Fatalf("delivered event %q names no remote queue id", d.Detail)
	}
	if !strings.Contains(rcv[0], "id "+mq[1]) {
		t.Errorf("b.test's Received %q does not carry the queue id %s of a.test's trace", rcv[0], mq[1])
	}
	return mq[1]
}

// TestOutboundSubmission sends from alice@a.test (Postern on 127.0.0.2)
// through submission with swaks and smtplib to b.test (Postern on
// 127.0.0.3), found by MX through the test DNS server, and checks what
// arrives, what a.test's trace says, bounces, refused senders and relays,
// and forwarding by an alias on b.test back to a.test.
func TestOutboundSubmission(t *testing.T) {
	t.Parallel()
	python(t)
	swaks(t)
	pp := startPair(t, `retry = ["1s"]`)

	t.Run("swaks starttls auth plain", func(t *testing.T) {
		pp.in(t)
		out, code := runSwaks(t, "--server", pp.a.ip, "--port", itoa(pp.a.subPort), "--tls",
			"--auth", "PLAIN", "--auth-user", "alice@a.test", "--auth-password", pp.a.password("alice@a.test"),
			"--helo", "laptop.a.test", "--from", "alice@a.test", "--to", "bob@b.test",
			"--header", "Subject: swaks to bob", "--body", "Sent with swaks over STARTTLS.")
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		for _, want := range []string{"<~  235 ", "<~  250 2.0.0 OK: queued as"} {
			if !strings.Contains(out, want) {
				t.Errorf("swaks transcript lacks %q:\n%s", want, out)
			}
		}
		m := swaksQueuedRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no queue id in swaks transcript:\n%s", out)
		}
		msg := waitMessage(t, pp.b.server, "bob@b.test", "swaks to bob", deliveryTimeout)
		if !strings.Contains(msg.Body, "Sent with swaks over STARTTLS.") {
			t.Errorf("body %q lacks the text sent", msg.Body)
		}
		bQID := checkRelayed(t, pp, msg, m[1], "bob@b.test")
		recv := eventsOf(pp.b.trace(bQID), "received")
		if len(recv) != 1 || !strings.Contains(recv[0].Detail, "from=<alice@a.test>") || !strings.Contains(recv[0].Detail, "helo=mx.a.test") ||
			!strings.Contains(recv[0].Detail, `tls="TLS 1.`) {
			t.Errorf("b.test's received event %v, want from=<alice@a.test> helo=mx.a.test over TLS", recv)
		}
		if n := len(pp.a.queueList()); n != 0 {
			t.Errorf("a.test's queue holds %d entries after delivery, want 0", n)
		}
	})

	t.Run("smtplib implicit tls auth login", func(t *testing.T) {
		pp.in(t)
		r := pp.a.submit(t, "ssl", "alice@a.test", "--mech", "LOGIN", "--from", "alice@a.test", "--to", "bob@b.test",
			"--subject", "smtplib to bob", "--message-id", "smtplib-1@a.test", "--body", "Sent with smtplib over implicit TLS.\n")
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		if r.Banner.Code != 220 || !strings.Contains(r.Banner.Text, "mx.a.test") {
			t.Errorf("banner %d %q", r.Banner.Code, r.Banner.Text)
		}
		if r.TLS == nil || !strings.HasPrefix(r.TLS.Version, "TLSv1.") {
			t.Fatalf("no TLS on the submissions port: %+v", r.TLS)
		}
		wantCode(t, "MAIL", r.Mail, 250, "2.0.0")
		qid := queueID(t, r.Data)
		msg := waitMessage(t, pp.b.server, "bob@b.test", "smtplib to bob", deliveryTimeout)
		if got := msg.Header.Get("Message-Id"); got != "<smtplib-1@a.test>" {
			t.Errorf("Message-ID %q", got)
		}
		if !strings.Contains(msg.Header["Received"][1], "using "+goTLSVersion(r.TLS.Version)+" with cipher "+r.TLS.Cipher) {
			t.Errorf("a.test's Received %q does not record the client's %s %s", msg.Header["Received"][1], r.TLS.Version, r.TLS.Cipher)
		}
		checkRelayed(t, pp, msg, qid, "bob@b.test")
	})

	t.Run("multi-recipient one transaction", func(t *testing.T) {
		pp.in(t)
		r := pp.a.submit(t, "starttls", "alice@a.test", "--from", "alice@a.test",
			"--to", "bob@b.test", "--to", "carol@b.test", "--to", "dave@b.test", "--to", "carol@a.test",
			"--subject", "to many", "--body", "One message, four recipients.\n")
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		wantCode(t, "STARTTLS", r.StartTLS, 220, "2.0.0")
		for i, rc := range r.Rcpt {
			wantCode(t, fmt.Sprintf("RCPT %d", i+1), &rc, 250, "2.0.0")
		}
		qid := queueID(t, r.Data)
		// carol@a.test is local to a.test: straight into her INBOX.
		local := wantOne(t, "carol@a.test", bySubject(pp.a.export("carol@a.test", ""), "to many"))
		if n := len(local.Header["Received"]); n != 1 {
			t.Errorf("local copy has %d Received headers, want 1", n)
		}
		bQIDs := map[string]bool{}
		for _, rcpt := range []string{"bob@b.test", "carol@b.test", "dave@b.test"} {
			m := waitMessage(t, pp.b.server, rcpt, "to many", deliveryTimeout)
			bQIDs[checkRelayed(t, pp, m, qid, rcpt)] = true
		}
		// Grouped per domain: one SMTP transaction, so one queue id on b.test.
		if len(bQIDs) != 1 {
			t.Fatalf("b.test received the three recipients as %d messages %v, want one transaction", len(bQIDs), bQIDs)
		}
		for id := range bQIDs {
			recv := eventsOf(pp.b.trace(id), "received")
			if len(recv) != 1 || !strings.Contains(recv[0].Detail, "nrcpt=3") {
				t.Errorf("b.test's received event %v, want nrcpt=3", recv)
			}
		}
	})

	t.Run("unknown remote user bounces to sender's INBOX", func(t *testing.T) {
		pp.in(t)
		r := pp.a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test", "--to", "nobody@b.test",
			"--subject", "to nobody", "--message-id", "nobody-1@a.test")
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		qid := queueID(t, r.Data)
		dsn := waitMessage(t, pp.a.server, "alice@a.test", "Undelivered Mail Returned to Sender", deliveryTimeout)
		checkFailureDSN(t, dsn, qid, "nobody@b.test", "mx.b.test")
		// The DSN is stored before the entry is finished: wait for that.
		eventually(t, 5*time.Second, func() string {
			if b := eventsOf(pp.a.trace(qid), "bounced"); len(b) != 1 || !strings.Contains(b[0].Detail, "host=mx.b.test") || !strings.Contains(b[0].Detail, `reply="550 5.1.1`) {
				return fmt.Sprintf("bounced events %v, want one from mx.b.test with 550 5.1.1", b)
			}
			return ""
		})
		if n := len(pp.a.queueList()); n != 0 {
			t.Errorf("a.test's queue holds %d entries after the bounce, want 0", n)
		}
	})

	t.Run("spoofed sender refused", func(t *testing.T) {
		pp.in(t)
		for _, from := range []string{"bob@a.test", "carol@a.test", "ceo@b.test", "bob@b.test"} {
			r := pp.a.submit(t, "ssl", "alice@a.test", "--from", from, "--to", "bob@b.test", "--subject", "spoof")
			if r.Error != "" {
				t.Fatalf("smtplib: %s", r.Error)
			}
			wantCode(t, "MAIL FROM:<"+from+">", r.Mail, 553, "5.7.1")
			if r.Data != nil {
				t.Errorf("DATA was accepted after a refused sender: %+v", r.Data)
			}
		}
		// swaks sees the same refusal over STARTTLS.
		out, code := runSwaks(t, "--server", pp.a.ip, "--port", itoa(pp.a.subPort), "--tls",
			"--auth", "PLAIN", "--auth-user", "alice@a.test", "--auth-password", pp.a.password("alice@a.test"),
			"--from", "ceo@b.test", "--to", "bob@b.test")
		if code == 0 || !strings.Contains(out, "<~* 553 5.7.1") {
			t.Errorf("swaks with a spoofed sender: exit %d, want a 553 5.7.1 to MAIL:\n%s", code, out)
		}
	})

	t.Run("unauthenticated relay refused", func(t *testing.T) {
		pp.in(t)
		r := pp.a.submit(t, "starttls", "", "--from", "alice@a.test", "--to", "bob@b.test", "--subject", "no auth")
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		wantCode(t, "MAIL without AUTH on submission", r.Mail, 530, "5.7.0")
		r = pp.a.submit(t, "ssl", "", "--from", "alice@a.test", "--to", "bob@b.test", "--subject", "no auth")
		wantCode(t, "MAIL without AUTH on submissions", r.Mail, 530, "5.7.0")
		// A wrong password gets 535 and no relay either.
		var bad struct {
			sendResult
			Auth *reply `json:"auth"`
		}
		runPython(t, &bad, "", "submit.py", "--host", pp.a.ip, "--port", itoa(pp.a.subsPort), "--mode", "ssl",
			"--user", "alice@a.test", "--password", "wrong", "--from", "alice@a.test", "--to", "bob@b.test")
		wantCode(t, "AUTH with a wrong password", bad.Auth, 535, "5.7.8")
		wantCode(t, "MAIL after failed AUTH", bad.Mail, 530, "5.7.0")
		// The MX listener relays nothing for anyone.
		out, _ := runSwaks(t, "--server", pp.a.ip, "--port", itoa(pp.a.mxPort), "--from", "alice@a.test", "--to", "bob@b.test")
		if !strings.Contains(out, "<** 554 5.7.1 <bob@b.test>: Relay access denied") {
			t.Errorf("relay through the MX listener not refused with 554 5.7.1:\n%s", out)
		}
		if n := len(pp.a.queueList()); n != 0 {
			t.Errorf("a.test's queue holds %d entries, want 0", n)
		}
		if n := len(bySubject(pp.b.export("bob@b.test", ""), "no auth")); n != 0 {
			t.Errorf("bob got %d unauthenticated messages", n)
		}
	})

	t.Run("alias on b.test forwards to a.test", func(t *testing.T) {
		pp.in(t)
		pp.b.cli("", "alias", "add", "team@b.test", "dave@b.test", "carol@a.test")
		r := pp.a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test", "--to", "team@b.test",
			"--subject", "to the team", "--body", "Forwarded by b.test's alias.\n")
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		qid := queueID(t, r.Data)
		dave := waitMessage(t, pp.b.server, "dave@b.test", "to the team", deliveryTimeout)
		bQID := checkRelayedTo(t, pp, dave, qid, "team@b.test", "dave@b.test")
		carol := waitMessage(t, pp.a.server, "carol@a.test", "to the team", deliveryTimeout)
		rcv := carol.Header["Received"]
		if len(rcv) != 3 || !strings.Contains(rcv[0], "from mx.b.test") || !strings.Contains(rcv[0], "by mx.a.test with ESMTPS") ||
			!strings.Contains(rcv[1], "by mx.b.test with ESMTPS id "+bQID) || !strings.Contains(rcv[2], "by mx.a.test with ESMTPSA id "+qid) {
			t.Errorf("forwarded copy's Received headers, want a.test <- b.test <- a.test:\n%s", strings.Join(rcv, "\n"))
		}
		if got := carol.Header.Get("Return-Path"); got != "<alice@a.test>" {
			t.Errorf("forwarded copy's Return-Path %q, want the original sender <alice@a.test>", got)
		}
		if !strings.Contains(carol.Body, "Forwarded by b.test's alias.") {
			t.Errorf("forwarded body %q", carol.Body)
		}
		evs := pp.b.trace(bQID)
		if q := eventsOf(evs, "queued"); len(q) != 1 || !strings.Contains(q[0].Detail, "to=<carol@a.test>") {
			t.Errorf("b.test's queued events %v, want one to carol@a.test", q)
		}
		eventually(t, 5*time.Second, func() string {
			for _, e := range eventsOf(pp.b.trace(bQID), "delivered") {
				if strings.Contains(e.Detail, "to=<carol@a.test>") && strings.Contains(e.Detail, "host=mx.a.test") && strings.Contains(e.Detail, "ip=127.0.0.2") {
					return ""
				}
			}
			return fmt.Sprintf("b.test's trace of %s has no delivery to carol@a.test via mx.a.test: %v", bQID, pp.b.trace(bQID))
		})
	})
}

// TestOutboundRemoteDown stops b.test, sends to it, checks that a.test keeps
// the entries queued and retries them, then starts b.test again: the entry
// not held is delivered after `queue retry --all`, the held one only after
// release (and a restart of a.test), each exactly once.
func TestOutboundRemoteDown(t *testing.T) {
	t.Parallel()
	python(t)
	pp := startPair(t, `retry = ["1s", "2s"]`)
	pp.b.stop()

	r := pp.a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test", "--to", "bob@b.test", "--to", "carol@b.test",
		"--subject", "while b.test was down", "--message-id", "down-1@a.test")
	if r.Error != "" {
		t.Fatalf("smtplib: %s", r.Error)
	}
	qid := queueID(t, r.Data)
	var entries []queueEntry
	eventually(t, 10*time.Second, func() string {
		entries = pp.a.queueList()
		if len(entries) != 2 {
			return fmt.Sprintf("queue has %d entries, want 2: %+v", len(entries), entries)
		}
		for _, e := range entries {
			if e.Attempts < 2 {
				return fmt.Sprintf("entry %+v not yet attempted twice", e)
			}
		}
		return ""
	})
	for _, e := range entries {
		if e.QueueID != qid || e.From != "alice@a.test" || e.Domain != "b.test" || e.Held || e.LastError == "" {
			t.Errorf("queue entry %+v, want queue id %s from alice@a.test to b.test with a last error", e, qid)
		}
		if !strings.HasPrefix(e.LastError, "4") {
			t.Errorf("last error %q is not a temporary failure", e.LastError)
		}
	}
	// trace finds the message by queue id and, while it is stored, by Message-ID.
	deferred := eventsOf(pp.a.trace(qid), "deferred")
	if evs := pp.a.trace("down-1@a.test"); len(evs) == 0 || evs[0].QueueID != qid {
		t.Errorf("trace by Message-ID: %v, want the events of %s", evs, qid)
	}
	if len(deferred) < 2 || !strings.Contains(deferred[0].Detail, "host=mx.b.test") {
		t.Errorf("deferred events %v, want at least 2 naming mx.b.test", deferred)
	}
	if n := len(bySubject(pp.a.export("alice@a.test", ""), "Undelivered Mail Returned to Sender")); n != 0 {
		t.Errorf("alice got %d failure DSNs for a temporary failure", n)
	}

	// Hold one entry: it must not go out until released.
	held := entries[0]
	pp.a.cli("", "queue", "hold", fmt.Sprint(held.ID))
	pp.b.start()
	if out := pp.a.cli("", "queue", "retry", "--all"); !strings.Contains(out, "1 entries due now") {
		t.Errorf("queue retry --all: %q, want 1 entry (the other is held)", out)
	}
	other := "bob@b.test"
	if held.Recipient == other {
		other = "carol@b.test"
	}
	waitMessage(t, pp.b.server, other, "while b.test was down", deliveryTimeout)
	eventually(t, 5*time.Second, func() string {
		if got := pp.a.queueList(); len(got) != 1 || got[0].ID != held.ID || !got[0].Held {
			return fmt.Sprintf("queue after delivery of the other recipient: %+v, want only the held entry %d", got, held.ID)
		}
		return ""
	})
	time.Sleep(1500 * time.Millisecond) // more than a retry interval
	if n := len(bySubject(pp.b.export(held.Recipient, ""), "while b.test was down")); n != 0 {
		t.Fatalf("held entry was delivered to %s", held.Recipient)
	}
	// Released, it goes out; a restart of a.test in between loses nothing
	// and the runner looks at the queue as soon as it starts.
	pp.a.cli("", "queue", "release", fmt.Sprint(held.ID))
	pp.a.stop()
	pp.a.start()
	m := waitMessage(t, pp.b.server, held.Recipient, "while b.test was down", deliveryTimeout)
	if got := m.Header.Get("Message-Id"); got != "<down-1@a.test>" {
		t.Errorf("Message-ID %q", got)
	}
	eventually(t, 5*time.Second, func() string {
		if q := pp.a.queueList(); len(q) != 0 {
			return fmt.Sprintf("queue still holds %+v", q)
		}
		return ""
	})
	if d := eventsOf(pp.a.trace(qid), "delivered"); len(d) != 2 {
		t.Errorf("delivered events %v, want 2", d)
	}
	// Exactly once each.
	for _, rcpt := range []string{"bob@b.test", "carol@b.test"} {
		if n := len(bySubject(pp.b.export(rcpt, ""), "while b.test was down")); n != 1 {
			t.Errorf("%s has %d copies, want 1", rcpt, n)
		}
	}
}

// checkFailureDSN parses an RFC 3464 failure report for one recipient of
// the message with queue id qid.
func checkFailureDSN(t *testing.T, m mboxMessage, qid, rcpt, remoteMTA string) {
	t.Helper()
	if got := m.Header.Get("Return-Path"); got != "<>" {
		t.Errorf("DSN Return-Path %q, want <>", got)
	}
	if from, err := mail.ParseAddress(m.Header.Get("From")); err != nil || !strings.EqualFold(from.Address, "MAILER-DAEMON@mx.a.test") {
		t.Errorf("DSN From %q (%v), want MAILER-DAEMON@mx.a.test", m.Header.Get("From"), err)
	}
	if got := m.Header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("DSN Auto-Submitted %q", got)
	}
	rep := parseDSN(t, m)
	if strings.Join(rep.types, " ") != "text/plain message/delivery-status text/rfc822-headers" {
		t.Fatalf("DSN parts %v, want text/plain, message/delivery-status, text/rfc822-headers", rep.types)
	}
	parts := rep.parts
	if !strings.Contains(parts[0], "<"+rcpt+">") || !strings.Contains(parts[0], "550 5.1.1") {
		t.Errorf("human-readable part does not explain the failure for %s:\n%s", rcpt, parts[0])
	}
	if len(rep.rcpts) != 1 {
		t.Fatalf("%d per-recipient blocks, want 1:\n%s", len(rep.rcpts), parts[1])
	}
	msgFields, rcptFields := rep.msg, rep.rcpts[0]
	want := map[string]string{"Reporting-Mta": "dns; mx.a.test", "X-Postern-Queue-Id": qid}
	for k, v := range want {
		if got := msgFields.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if _, err := mail.ParseDate(msgFields.Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date %q: %v", msgFields.Get("Arrival-Date"), err)
	}
	want = map[string]string{"Final-Recipient": "rfc822; " + rcpt, "Action": "failed", "Status": "5.1.1", "Remote-Mta": "dns; " + remoteMTA}
	for k, v := range want {
		if got := rcptFields.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if d := rcptFields.Get("Diagnostic-Code"); !strings.HasPrefix(d, "smtp; 550 5.1.1") || !strings.Contains(d, rcpt) {
		t.Errorf("Diagnostic-Code %q, want %s's 550 5.1.1 for %s", d, remoteMTA, rcpt)
	}
	if _, err := mail.ParseDate(rcptFields.Get("Last-Attempt-Date")); err != nil {
		t.Errorf("Last-Attempt-Date %q: %v", rcptFields.Get("Last-Attempt-Date"), err)
	}
	// The original's header section comes back (RET=HDRS by default).
	orig, err := mail.ReadMessage(strings.NewReader(strings.ReplaceAll(parts[2], "\r\n", "\n") + "\n"))
	if err != nil {
		t.Fatalf("returned headers: %v\n%s", err, parts[2])
	}
	if !strings.Contains(orig.Header.Get("To"), rcpt) || !strings.Contains(orig.Header.Get("Received"), "id "+qid) {
		t.Errorf("returned headers are not the original's:\n%s", parts[2])
	}
}

// dsnReport is a parsed RFC 3464 multipart/report.
type dsnReport struct {
	types, parts []string               // each part's media type and content
	msg          textproto.MIMEHeader   // per-message fields
	rcpts        []textproto.MIMEHeader // per-recipient fields
}

// parseDSN splits a DSN into its parts and the fields of its
// message/delivery-status part: per-message fields, then one block per
// recipient, separated by blank lines (RFC 3464 2.1).
func parseDSN(t *testing.T, m mboxMessage) dsnReport {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q (%v), want multipart/report; report-type=delivery-status", m.Header.Get("Content-Type"), err)
	}
	var rep dsnReport
	mr := multipart.NewReader(strings.NewReader(m.Body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part %d: %v", len(rep.types)+1, err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		rep.types = append(rep.types, ct)
		rep.parts = append(rep.parts, string(b))
	}
	if len(rep.types) < 2 || rep.types[1] != "message/delivery-status" {
		t.Fatalf("DSN parts %v: no message/delivery-status second", rep.types)
	}
	tr := textproto.NewReader(bufio.NewReader(strings.NewReader(rep.parts[1])))
	if rep.msg, err = tr.ReadMIMEHeader(); err != nil {
		t.Fatalf("per-message fields: %v\n%s", err, rep.parts[1])
	}
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			rep.rcpts = append(rep.rcpts, h)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("per-recipient fields: %v\n%s", err, rep.parts[1])
		}
	}
	return rep
}

// TestOutboundDelayAndDelete keeps b.test down: the sender gets one delay
// notice after [queue] delay_warning, and `postern queue delete` returns a
// failure notice unless --silent.
func TestOutboundDelayAndDelete(t *testing.T) {
	t.Parallel()
	python(t)
	pp := startPair(t, "retry = [\"1s\"]\ndelay_warning = \"1s\"")
	pp.b.stop()
	send := func(subject string, to ...string) string {
		t.Helper()
		args := []string{"--from", "alice@a.test", "--subject", subject}
		for _, r := range to {
			args = append(args, "--to", r)
		}
		r := pp.a.submit(t, "ssl", "alice@a.test", args...)
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		return queueID(t, r.Data)
	}
	// dsns returns alice's DSNs of one kind (by subject) per queue id.
	dsns := func(subject string) map[string][]dsnReport {
		out := map[string][]dsnReport{}
		for _, m := range bySubject(pp.a.export("alice@a.test", ""), subject) {
			rep := parseDSN(t, m)
			id := rep.msg.Get("X-Postern-Queue-Id")
			out[id] = append(out[id], rep)
		}
		return out
	}
	const delayed, failed = "Delayed Mail (still being retried)", "Undelivered Mail Returned to Sender"

	slow := send("slow", "bob@b.test", "carol@b.test")
	m := waitMessage(t, pp.a.server, "alice@a.test", delayed, deliveryTimeout)
	rep := parseDSN(t, m)
	if got := rep.msg.Get("X-Postern-Queue-Id"); got != slow {
		t.Fatalf("delay notice for %q, want %s", got, slow)
	}
	if len(rep.rcpts) != 2 {
		t.Fatalf("delay notice has %d recipients, want 2:\n%s", len(rep.rcpts), rep.parts[1])
	}
	for i, want := range []string{"bob@b.test", "carol@b.test"} {
		f := rep.rcpts[i]
		if f.Get("Final-Recipient") != "rfc822; "+want || f.Get("Action") != "delayed" || !strings.HasPrefix(f.Get("Status"), "4.") ||
			f.Get("Remote-Mta") != "dns; mx.b.test" || !strings.HasPrefix(f.Get("Diagnostic-Code"), "smtp; 451 4.4.1") {
			t.Errorf("delay notice recipient %d: %v", i+1, f)
		}
		until, err := mail.ParseDate(f.Get("Will-Retry-Until"))
		if err != nil || until.Before(time.Now().Add(100*time.Hour)) {
			t.Errorf("Will-Retry-Until %q (%v), want max_lifetime (120h) after arrival", f.Get("Will-Retry-Until"), err)
		}
	}
	if !strings.Contains(rep.parts[0], "you do not need to send it again") {
		t.Errorf("human-readable part:\n%s", rep.parts[0])
	}

	// Once only: two more attempts, still one notice.
	var first int
	for _, e := range pp.a.queueList() {
		first = max(first, e.Attempts)
	}
	eventually(t, 10*time.Second, func() string {
		for _, e := range pp.a.queueList() {
			if e.QueueID == slow && e.Attempts >= first+2 {
				return ""
			}
		}
		return "waiting for two more attempts"
	})
	if n := len(dsns(delayed)[slow]); n != 1 {
		t.Errorf("%d delay notices for %s, want 1", n, slow)
	}

	loud, silent := send("deleted loudly", "dave@b.test"), send("deleted silently", "dave@b.test")
	ids := map[string]int64{}
	eventually(t, 10*time.Second, func() string {
		for _, e := range pp.a.queueList() {
			if e.Attempts > 0 {
				ids[e.QueueID] = e.ID
			}
		}
		if ids[loud] == 0 || ids[silent] == 0 {
			return fmt.Sprintf("entries of %s and %s not attempted yet: %v", loud, silent, ids)
		}
		return ""
	})
	if out := pp.a.cli("", "queue", "delete", fmt.Sprint(ids[loud])); !strings.Contains(out, "deleted 1 entries") {
		t.Errorf("queue delete: %q", out)
	}
	pp.a.cli("", "queue", "delete", "--silent", fmt.Sprint(ids[silent]))
	for _, e := range pp.a.queueList() {
		if e.QueueID != slow {
			t.Errorf("entry %+v left after delete", e)
		}
	}
	// The CLI stores the notice itself: it is there when the command returns.
	got := dsns(failed)
	if len(got[loud]) != 1 || len(got[silent]) != 0 || len(got[slow]) != 0 || len(got) != 1 {
		t.Fatalf("failure notices per queue id %v, want one for %s (deleted) only", got, loud)
	}
	f := got[loud][0].rcpts[0]
	if f.Get("Final-Recipient") != "rfc822; dave@b.test" || f.Get("Action") != "failed" || !strings.HasPrefix(f.Get("Status"), "5.") ||
		!strings.Contains(f.Get("Diagnostic-Code"), "deleted from the queue by the administrator") {
		t.Errorf("deletion notice fields: %v", f)
	}
	for id, silentWant := range map[string]string{loud: "silent=false", silent: "silent=true"} {
		if d := eventsOf(pp.a.trace(id), "deleted"); len(d) != 1 || !strings.Contains(d[0].Detail, silentWant) {
			t.Errorf("deleted events of %s: %v, want one with %s", id, d, silentWant)
		}
	}
}
