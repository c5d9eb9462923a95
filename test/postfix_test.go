//go:build !windows

package e2e

import (
	"context"
	"fmt"
	"net/mail"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/postfixtest"
)

// needPostfix fails (under CI) or skips the test when Debian's Postfix
// cannot be run here.
func needPostfix(t *testing.T) {
	t.Helper()
	if why := postfixtest.Missing(); why != "" {
		if inCI() {
			t.Fatalf("CI is set and %s", why)
		}
		t.Skip(why)
	}
}

var postfixQueuedRe = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// TestPostfixInterop exchanges mail between Postern and a real Postfix from
// Debian: a.test and b.test are Postern instances on 127.0.0.2 and
// 127.0.0.3, c.test is Postfix on 127.0.0.4 (virtual mailboxes in
// Maildirs), all on the same port and found through the same DNS server;
// Postfix sends b.test's mail to Postern through transport_maps.
func TestPostfixInterop(t *testing.T) {
	t.Parallel()
	python(t)
	swaks(t)
	needPostfix(t)
	dns := mxZone(t, map[string]string{"a.test": "127.0.0.2", "b.test": "127.0.0.3", "c.test": "127.0.0.4"})
	port := commonPort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	pfAddr := fmt.Sprintf("127.0.0.4:%d", port)
	pf := postfixtest.Start(t, postfixtest.Options{
		Hostname:  "mx.c.test",
		Listen:    []string{pfAddr},
		Mailboxes: []string{"carol@c.test", "dan@c.test"},
		Transport: map[string]string{"b.test": fmt.Sprintf("smtp:[127.0.0.3]:%d", port)},
		TLS:       true,
	})
	pp := startPairWith(t, `retry = ["1s"]`, dns, port)

	t.Run("postern to postfix", func(t *testing.T) {
		pp.in(t)
		r := pp.a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test",
			"--to", "carol@c.test", "--to", "dan@c.test", "--to", "nobody@c.test",
			"--subject", "postern to postfix", "--message-id", "to-postfix-1@a.test", "--body", "From Postern to Postfix.\n")
		if r.Error != "" {
			t.Fatalf("smtplib: %s", r.Error)
		}
		qid := queueID(t, r.Data)

		var files []string
		eventually(t, deliveryTimeout, func() string {
			if files = pf.NewMessages("carol@c.test"); len(files) == 0 {
				return "no file in " + pf.Maildir("carol@c.test") + "/new"
			}
			return ""
		})
		if len(files) != 1 {
			t.Fatalf("%d files in carol's Maildir/new, want 1", len(files))
		}
		m, err := mail.ReadMessage(strings.NewReader(files[0]))
		if err != nil {
			t.Fatalf("Maildir file: %v\n%s", err, files[0])
		}
		if got := m.Header.Get("Return-Path"); got != "<alice@a.test>" {
			t.Errorf("Return-Path %q", got)
		}
		if got := m.Header.Get("Delivered-To"); got != "carol@c.test" {
			t.Errorf("Delivered-To %q", got)
		}
		if got := m.Header.Get("Message-Id"); got != "<to-postfix-1@a.test>" {
			t.Errorf("Message-ID %q", got)
		}
		rcv := m.Header["Received"]
		if len(rcv) != 2 {
			t.Fatalf("Received headers %q, want Postfix's and a.test's", rcv)
		}
		for _, want := range []string{"from mx.a.test", "by mx.c.test (Postfix) with ESMTPS id ", "TLSv1."} {
			if !strings.Contains(rcv[0], want) {
				t.Errorf("Postfix's Received %q lacks %q", rcv[0], want)
			}
		}
		if !strings.Contains(rcv[1], "by mx.a.test with ESMTPSA id "+qid) {
			t.Errorf("a.test's Received %q", rcv[1])
		}
		if !strings.Contains(files[0], "From Postern to Postfix.") {
			t.Errorf("body lost:\n%s", files[0])
		}

		// dan got it in the same transaction (one Postfix queue id); nobody
		// was refused by Postfix and alice has the DSN.
		dsn := waitMessage(t, pp.a.server, "alice@a.test", "Undelivered Mail Returned to Sender", deliveryTimeout)
		checkFailureDSN(t, dsn, qid, "nobody@c.test", "mx.c.test")
		var delivered []traceEvent
		eventually(t, 5*time.Second, func() string {
			delivered = eventsOf(pp.a.trace(qid), "delivered")
			if len(delivered) != 2 {
				return fmt.Sprintf("delivered events %v, want 2", delivered)
			}
			return ""
		})
		pfIDs := map[string]bool{}
		for _, d := range delivered {
			for _, want := range []string{"host=mx.c.test", "ip=127.0.0.4", `tls="TLS 1.`, `reply="250 2.0.0`} {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("delivered event %q lacks %q", d.Detail, want)
				}
			}
			if m := postfixQueuedRe.FindStringSubmatch(d.Detail); m != nil {
				pfIDs[m[1]] = true
			}
		}
		if len(pfIDs) != 1 {
			t.Errorf("Postfix queue ids %v in %v, want one transaction", pfIDs, delivered)
		}
		for id := range pfIDs {
			if !strings.Contains(rcv[0], "id "+id) {
				t.Errorf("Postfix's Received %q does not carry its queue id %s", rcv[0], id)
			}
		}
		if n := len(pf.NewMessages("dan@c.test")); n != 1 {
			t.Errorf("dan has %d messages, want 1", n)
		}
		eventually(t, 5*time.Second, func() string {
			if b := eventsOf(pp.a.trace(qid), "bounced"); len(b) != 1 || !strings.Contains(b[0].Detail, "to=<nobody@c.test>") ||
				!strings.Contains(b[0].Detail, `reply="550 5.1.1`) {
				return fmt.Sprintf("bounced events %v, want nobody@c.test refused with 550 5.1.1 by Postfix", b)
			}
			return ""
		})
	})

	t.Run("postfix to postern over smtp", func(t *testing.T) {
		pp.in(t)
		out, code := runSwaks(t, "--server", pfAddr, "--helo", "client.c.test", "--from", "dan@c.test", "--to", "bob@b.test",
			"--header", "Subject: postfix to postern", "--header", "Message-Id: <from-postfix-1@c.test>", "--body", "From Postfix to Postern.")
		if code != 0 {
			t.Fatalf("swaks to Postfix: exit %d\n%s", code, out)
		}
		m := postfixQueuedRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no Postfix queue id in:\n%s", out)
		}
		msg := waitMessage(t, pp.b.server, "bob@b.test", "postfix to postern", deliveryTimeout)
		checkFromPostfix(t, pp, msg, m[1], "dan@c.test", "From Postfix to Postern.")
	})

	t.Run("postfix to postern with sendmail", func(t *testing.T) {
		pp.in(t)
		sendmail, err := postfixtest.Tool("sendmail")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, sendmail, "-C", pf.Etc, "-f", "carol@c.test", "-i", "bob@b.test", "dave@b.test")
		cmd.Stdin = strings.NewReader("From: carol@c.test\nTo: bob@b.test, dave@b.test\nSubject: sendmail to postern\nMessage-ID: <from-postfix-2@c.test>\n\nVia Postfix's sendmail and pickup.\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sendmail: %v\n%s", err, out)
		}
		for _, rcpt := range []string{"bob@b.test", "dave@b.test"} {
			msg := waitMessage(t, pp.b.server, rcpt, "sendmail to postern", deliveryTimeout)
			checkFromPostfix(t, pp, msg, "", "carol@c.test", "Via Postfix's sendmail and pickup.")
		}
	})

	t.Run("postern refuses an unknown user, postfix bounces", func(t *testing.T) {
		pp.in(t)
		before := len(pf.NewMessages("dan@c.test"))
		out, code := runSwaks(t, "--server", pfAddr, "--helo", "client.c.test", "--from", "dan@c.test", "--to", "nobody@b.test",
			"--header", "Subject: to nobody at b.test")
		if code != 0 {
			t.Fatalf("swaks to Postfix: exit %d\n%s", code, out)
		}
		var bounce string
		eventually(t, deliveryTimeout, func() string {
			msgs := pf.NewMessages("dan@c.test")
			for _, m := range msgs {
				if strings.Contains(m, "Undelivered Mail Returned to Sender") && strings.Contains(m, "to nobody at b.test") {
					bounce = m
					return ""
				}
			}
			return fmt.Sprintf("no bounce among dan's %d messages (had %d before)", len(msgs), before)
		})
		for _, want := range []string{"Final-Recipient: rfc822; nobody@b.test", "Action: failed", "Status: 5.1.1",
			"Remote-MTA: dns; 127.0.0.3", "Diagnostic-Code: smtp; 550 5.1.1 <nobody@b.test>: Recipient address"} {
			if !strings.Contains(bounce, want) {
				t.Errorf("Postfix's bounce lacks %q:\n%s", want, bounce)
			}
		}
	})

	// Nothing is left in Postfix's queue.
	eventually(t, 5*time.Second, func() string {
		out, err := pf.Postqueue("-p")
		if err != nil || !strings.Contains(out, "Mail queue is empty") {
			return fmt.Sprintf("postqueue -p: %v\n%s", err, out)
		}
		return ""
	})
}

// checkFromPostfix checks a message Postfix relayed to b.test: b.test's
// Received (from mx.c.test over TLS) above Postfix's, the envelope sender,
// the body, and b.test's trace of it.
func checkFromPostfix(t *testing.T, pp peerPair, msg mboxMessage, pfQID, from, body string) {
	t.Helper()
	rcv := msg.Header["Received"]
	if len(rcv) < 2 {
		t.Fatalf("Received headers %q, want b.test's and Postfix's", rcv)
	}
	for _, want := range []string{"from mx.c.test", "by mx.b.test with ESMTPS id ", "using TLS 1."} {
		if !strings.Contains(rcv[0], want) {
			t.Errorf("b.test's Received %q lacks %q", rcv[0], want)
		}
	}
	if !strings.Contains(rcv[1], "by mx.c.test (Postfix") || !strings.Contains(rcv[1], "id "+pfQID) {
		t.Errorf("Postfix's Received %q, want by mx.c.test (Postfix) with id %s", rcv[1], pfQID)
	}
	if got := msg.Header.Get("Return-Path"); got != "<"+from+">" {
		t.Errorf("Return-Path %q, want <%s>", got, from)
	}
	if !strings.Contains(msg.Body, body) {
		t.Errorf("body %q lacks %q", msg.Body, body)
	}
	m := regexp.MustCompile(`with ESMTPS id (\S+)`).FindStringSubmatch(rcv[0])
	if m == nil {
		t.Fatalf("no queue id in b.test's Received %q", rcv[0])
	}
	recv := eventsOf(pp.b.trace(m[1]), "received")
	if len(recv) != 1 || !strings.Contains(recv[0].Detail, "from=<"+from+">") || !strings.Contains(recv[0].Detail, "helo=mx.c.test") ||
		!strings.Contains(recv[0].Detail, `tls="TLS 1.`) {
		t.Errorf("b.test's received event %v, want from=<%s> helo=mx.c.test over TLS", recv, from)
	}
}
