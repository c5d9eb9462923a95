package smtpd_test

import (
	"context"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
	"time"
)

// wireMessage is sent over the wire (dot-stuffed, 8-bit); storedMessage is
// what the mailbox must hold after the trace headers.
const (
	wireMessage = "From: Sender <sender@example.net>\r\n" +
		"To: alice@example.org\r\n" +
		"Subject: hello\r\n" +
		"Message-ID: <m1@example.net>\r\n" +
		"\r\n" +
		"Hello Alice,\r\n" +
		"..a line that starts with a dot\r\n" +
		"caf\xc3\xa9 \xe2\x98\x95 8-bit text\r\n" +
		"\r\n"
	storedMessage = "From: Sender <sender@example.net>\r\n" +
		"To: alice@example.org\r\n" +
		"Subject: hello\r\n" +
		"Message-ID: <m1@example.net>\r\n" +
		"\r\n" +
		"Hello Alice,\r\n" +
		".a line that starts with a dot\r\n" +
		"caf\xc3\xa9 \xe2\x98\x95 8-bit text\r\n" +
		"\r\n"
)

var receivedRe = regexp.MustCompile(`^Received: from client\.example\.net \(\[127\.0\.0\.1\]\)\n` +
	`\tby mx\.example\.org with (ESMTPS?) id ([0-9a-v]{24})(\n\t\(using [^)]+\))?(\n\tfor <([^>]+)>)?; (.+)$`)

// checkTrace checks the Return-Path, Delivered-To and Received fields that
// lead a delivered message and returns what follows them.
func checkTrace(t *testing.T, m message, from, deliveredTo, forRcpt, qid string) (received []string, body string) {
	t.Helper()
	fields, body := splitHeader(t, m.Data, 3)
	if want := "Return-Path: <" + from + ">"; fields[0] != want {
		t.Errorf("first field %q, want %q", fields[0], want)
	}
	if want := "Delivered-To: " + deliveredTo; fields[1] != want {
		t.Errorf("second field %q, want %q", fields[1], want)
	}
	received = receivedRe.FindStringSubmatch(fields[2])
	if received == nil {
		t.Fatalf("third field is not the expected Received: %q", fields[2])
	}
	if received[2] != qid {
		t.Errorf("Received id %s, want the queue ID %s", received[2], qid)
	}
	if received[5] != forRcpt {
		t.Errorf("Received for <%s>, want <%s>", received[5], forRcpt)
	}
	date, err := time.Parse(time.RFC1123Z, received[6])
	if err != nil {
		t.Errorf("Received date %q: %v", received[6], err)
	} else if d := time.Since(date); d < -time.Minute || d > time.Minute {
		t.Errorf("Received date %v is not now", date)
	}
	if m.QueueID != qid {
		t.Errorf("entry queue ID %s, want %s", m.QueueID, qid)
	}
	if m.From != from {
		t.Errorf("entry envelope sender %q, want %q", m.From, from)
	}
	if m.Size != int64(len(m.Data)) {
		t.Errorf("entry size %d, but %d bytes read", m.Size, len(m.Data))
	}
	return received, body
}

func TestLocalDelivery(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	reply := c.send("sender@example.net", []string{"alice@example.org"}, wireMessage)
	qid := queueID(t, reply)

	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	rec, body := checkTrace(t, msgs[0], "sender@example.net", "alice@example.org", "alice@example.org", qid)
	if rec[1] != "ESMTP" || rec[3] != "" {
		t.Errorf("Received says %s %q for a plaintext session", rec[1], rec[3])
	}
	if body != storedMessage {
		t.Errorf("stored message:\n%q\nwant:\n%q", body, storedMessage)
	}
	if got := ts.inboxCounts(); got["bob@example.org"] != 0 || got["carol@example.org"] != 0 {
		t.Errorf("other users got mail: %v", got)
	}
	for _, name := range []string{"Drafts", "Sent", "Trash", "Junk", "Archive"} {
		if n := len(ts.mailbox("alice@example.org", name)); n != 0 {
			t.Errorf("%s has %d messages, want 0", name, n)
		}
	}

	// The message's journey is recorded, by queue ID and by Message-ID.
	for _, id := range []string{qid, "m1@example.net"} {
		evs, err := ts.st.Events(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range evs {
			kinds = append(kinds, e.Kind)
		}
		if strings.Join(kinds, ",") != "received,delivered" {
			t.Errorf("events for %s: %q, want received,delivered", id, kinds)
		}
	}

	// The session goes on: a second message gets its own queue ID and UID.
	qid2 := queueID(t, c.send("", []string{"alice@example.org"}, "Subject: bounce\r\n\r\nbody\r\n"))
	if qid2 == qid {
		t.Error("two messages share a queue ID")
	}
	msgs = ts.inbox("alice@example.org")
	if len(msgs) != 2 {
		t.Fatalf("alice has %d messages, want 2", len(msgs))
	}
	if msgs[1].UID <= msgs[0].UID {
		t.Errorf("UIDs %d then %d do not grow", msgs[0].UID, msgs[1].UID)
	}
	// The null sender is kept as Return-Path: <>.
	_, body = checkTrace(t, msgs[1], "", "alice@example.org", "alice@example.org", qid2)
	if body != "Subject: bounce\r\n\r\nbody\r\n" {
		t.Errorf("second message body %q", body)
	}
	c.expect("QUIT", 221, "2.0.0")
}

// TestNetSMTPClient delivers with Go's own SMTP client.
func TestNetSMTPClient(t *testing.T) {
	ts := newTestServer(t, nil)
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	// net/smtp turns "\n" into "\r\n" and dot-stuffs.
	if _, err := w.Write([]byte("Subject: via net/smtp\n\n.hidden dot\nend\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	msgs := ts.inbox("bob@example.org")
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(msgs))
	}
	_, body := checkTrace(t, msgs[0], "sender@example.net", "bob@example.org", "bob@example.org", msgs[0].QueueID)
	if want := "Subject: via net/smtp\r\n\r\n.hidden dot\r\nend\r\n"; body != want {
		t.Errorf("body %q, want %q", body, want)
	}
}

func TestUnknownUser(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	msg := c.expect("RCPT TO:<nobody@example.org>", 550, "5.1.1")
	if !strings.Contains(msg, "nobody@example.org") {
		t.Errorf("550 reply %q does not name the address", msg)
	}
	// An unknown subaddress of an unknown user is unknown too.
	c.expect("RCPT TO:<nobody+tag@example.org>", 550, "5.1.1")
	// No accepted recipient: DATA is refused.
	c.expect("DATA", 502, "5.5.1")
	// The transaction can still gain a valid recipient.
	c.expect("RCPT TO:<carol@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.expectReply(250, "2.0.0")
	if got := ts.inboxCounts(); got["carol@example.org"] != 1 {
		t.Errorf("carol has %d messages, want 1", got["carol@example.org"])
	}
}

func TestRelayDenied(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	for _, rcpt := range []string{
		"someone@example.net",
		"alice@example.org.evil.test",
		"alice@sub.example.org",
		"alice@[127.0.0.1]",
		"alice@[IPv6:::1]",
		"postmaster@[127.0.0.1]",
	} {
		t.Run(rcpt, func(t *testing.T) {
			c.t = t
			msg := c.expect("RCPT TO:<"+rcpt+">", 554, "5.7.1")
			if !strings.Contains(strings.ToLower(msg), "relay") {
				t.Errorf("554 reply %q does not say relay", msg)
			}
		})
	}
	c.t = t
	c.expect("DATA", 502, "5.5.1")
	ts.expectNothingStored()
}

// TestDomainCaseInsensitive checks that a local domain and local part in
// any case reach the lower-case account.
func TestDomainCaseInsensitive(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<Alice@EXAMPLE.Org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write("Subject: case\r\n\r\nhi\r\n.\r\n")
	qid := queueID(t, c.expectReply(250, "2.0.0"))
	msgs := ts.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	// Delivered-To names the account; Received keeps the address as given.
	checkTrace(t, msgs[0], "sender@example.net", "alice@example.org", "Alice@EXAMPLE.Org", qid)
}

func TestAliasDeliversOneCopyEach(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	qid := queueID(t, c.send("sender@example.net", []string{"team@example.org"}, "Subject: team\r\n\r\nhello team\r\n"))
	got := ts.inboxCounts()
	if got["alice@example.org"] != 1 || got["bob@example.org"] != 1 || got["carol@example.org"] != 0 {
		t.Fatalf("inbox counts %v, want alice 1, bob 1, carol 0", got)
	}
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		m := ts.inbox(u)[0]
		_, body := checkTrace(t, m, "sender@example.net", u, "team@example.org", qid)
		if body != "Subject: team\r\n\r\nhello team\r\n" {
			t.Errorf("%s: body %q", u, body)
		}
	}
	// Stored once: both entries share one message (small messages may be
	// kept in the index, so there is at most one file).
	a, b := ts.inbox("alice@example.org")[0], ts.inbox("bob@example.org")[0]
	if a.MessageID != b.MessageID {
		t.Errorf("alias copies are stored twice (message %d and %d)", a.MessageID, b.MessageID)
	}
	if files := ts.blobFiles(); len(files) > 1 {
		t.Errorf("%d message files, want at most 1: %q", len(files), files)
	}
}

func TestDuplicateRecipientsOneCopy(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	// alice twice (in two spellings), and again through the alias and a
	// subaddress; bob through the alias.
	c.send("sender@example.net", []string{"alice@example.org", "ALICE@example.org", "team@example.org", "alice+x@example.org"},
		"Subject: dup\r\n\r\nonce\r\n")
	got := ts.inboxCounts()
	if got["alice@example.org"] != 1 || got["bob@example.org"] != 1 || got["carol@example.org"] != 0 {
		t.Fatalf("inbox counts %v, want alice 1, bob 1, carol 0", got)
	}
	// Several recipients: the Received header names none of them.
	rec, _ := checkTrace(t, ts.inbox("alice@example.org")[0], "sender@example.net", "alice@example.org", "", ts.inbox("alice@example.org")[0].QueueID)
	if rec[4] != "" {
		t.Errorf("Received names one recipient of several: %q", rec[4])
	}
}

func TestSubaddress(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	qid := queueID(t, c.send("sender@example.net", []string{"carol+lists@example.org"}, "Subject: tagged\r\n\r\nhi\r\n"))
	msgs := ts.inbox("carol@example.org")
	if len(msgs) != 1 {
		t.Fatalf("carol has %d messages, want 1", len(msgs))
	}
	checkTrace(t, msgs[0], "sender@example.net", "carol@example.org", "carol+lists@example.org", qid)
}

func TestBadAddresses(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	// RCPT before MAIL.
	c.expect("RCPT TO:<alice@example.org>", 502, "5.5.1")
	c.expect("MAIL FROM:<no-at-sign>", 501, "5.5.2")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@>", 501, "5.5.2")
	c.expect("RCPT TO:<@example.org>", 501, "5.5.2")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("RSET", 250, "2.0.0")
	// RSET forgot the recipient.
	c.expect("DATA", 502, "5.5.1")
}

// TestVRFY checks that VRFY reveals nothing (DESIGN.md: 252 for all).
func TestVRFY(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	known := c.expect("VRFY alice@example.org", 252, "2.5.2")
	unknown := c.expect("VRFY nobody@example.org", 252, "2.5.2")
	if known != unknown {
		t.Errorf("VRFY answers differ: %q and %q", known, unknown)
	}
}
