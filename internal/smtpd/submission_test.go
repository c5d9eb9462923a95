package smtpd_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/smtpd"
)

// newSubmission starts a submission server where alice's password is
// "alice-secret" and the alias team@ reaches alice and bob.
func newSubmission(t *testing.T, change func(*smtpd.Config)) *testServer {
	t.Helper()
	ts := newTestServer(t, func(c *smtpd.Config) {
		c.Submission = true
		c.Throttle = auth.NewThrottle()
		if change != nil {
			change(c)
		}
	})
	h, err := auth.HashPassword("alice-secret")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.st.SetPassword(context.Background(), "alice@example.org", h); err != nil {
		t.Fatal(err)
	}
	return ts
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSubmissionAuthOnlyUnderTLS(t *testing.T) {
	ts := newSubmission(t, nil)
	c := ts.dial()
	if ehlo := c.ehlo("client.example.net"); contains(ehlo, "AUTH PLAIN LOGIN") || hasPrefixIn(ehlo, "AUTH") {
		t.Fatalf("AUTH offered before TLS: %q", ehlo)
	}
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 523, "5.7.10")
	c.expect("MAIL FROM:<alice@example.org>", 530, "5.7.0")
	c.startTLS(ts.clientTLS)
	if ehlo := c.ehlo("client.example.net"); !contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("AUTH not offered after STARTTLS: %q", ehlo)
	}
	c.expect("MAIL FROM:<alice@example.org>", 530, "5.7.0")
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
	c.expect("MAIL FROM:<alice@example.org>", 250, "2.0.0")
}

func TestSubmissionWrongPasswordAndUnknownUserLookAlike(t *testing.T) {
	ts := newSubmission(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	wrong := c.expect("AUTH PLAIN "+plain("alice@example.org", "nope"), 535, "5.7.8")
	unknown := c.expect("AUTH PLAIN "+plain("mallory@example.org", "nope"), 535, "5.7.8")
	if wrong != unknown {
		t.Errorf("wrong password %q and unknown user %q answered differently", wrong, unknown)
	}
	// LOGIN, with the user name in the initial response and without.
	c.expect("AUTH LOGIN "+b64("alice@example.org"), 334, "")
	c.expect(b64("nope"), 535, "5.7.8")
	c.expect("AUTH LOGIN", 334, "")
	c.expect(b64("alice@example.org"), 334, "")
	c.expect(b64("alice-secret"), 235, "2.0.0")
}

// TestSubmissionRefusesAfterMaxFailures: the failure that reaches MaxPerIP
// is answered like any other; then the IP is in its cool-down: AUTH gets
// 454 4.7.0 without a password check, even with the right password, and a
// new connection gets 421 4.7.0 and is closed, until the cool-down ends.
func TestSubmissionRefusesAfterMaxFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ts := newSubmission(t, func(c *smtpd.Config) {
		c.Throttle = &auth.Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: 10 * time.Minute, Now: clock}
	})
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	for i := 0; i < 3; i++ {
		c.expect("AUTH PLAIN "+plain("alice@example.org", fmt.Sprint("guess", i)), 535, "5.7.8")
	}
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 454, "4.7.0")
	c.expect("AUTH PLAIN "+plain("nobody@example.org", "x"), 454, "4.7.0")
	if _, line := ts.dialRaw(); !strings.HasPrefix(line, "421 4.7.0 ") {
		t.Fatalf("new connection in the cool-down: %q, want 421 4.7.0", line)
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	c = ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
}

func TestSubmissionSenderMustBeOwned(t *testing.T) {
	ts := newSubmission(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
	c.expect("MAIL FROM:<bob@example.org>", 553, "5.7.1")
	c.expect("MAIL FROM:<ceo@bank.example>", 553, "5.7.1")
	c.expect("MAIL FROM:<>", 553, "5.7.1")
	c.expect("MAIL FROM:<Alice+lists@example.org>", 250, "2.0.0")
	c.expect("RSET", 250, "2.0.0")
	c.expect("MAIL FROM:<team@example.org>", 250, "2.0.0") // an alias that reaches alice
}

func TestSubmissionQueuesRemoteAndDeliversLocal(t *testing.T) {
	ts := newSubmission(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
	c.expect("MAIL FROM:<alice@example.org> RET=HDRS ENVID=env42", 250, "2.0.0")
	c.expect("RCPT TO:<friend@remote.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;friend@remote.example", 250, "2.0.0")
	c.expect("RCPT TO:<other@elsewhere.example>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<nobody@example.org>", 550, "5.1.1")
	c.expect("DATA", 354, "")
	c.write("Subject: out\r\n\r\nhello world\r\n.\r\n")
	qid := queueID(t, c.expectReply(250, "2.0.0"))

	bob := ts.inbox("bob@example.org")
	if len(bob) != 1 || !strings.Contains(bob[0].Data, "with ESMTPSA id "+qid) {
		t.Fatalf("bob's copy: %+v", bob)
	}
	es, err := ts.st.QueueEntries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("%d queue entries, want 2: %+v", len(es), es)
	}
	for _, e := range es {
		if e.QueueID != qid || e.From != "alice@example.org" || e.Ret != "HDRS" || e.EnvID != "env42" {
			t.Errorf("queue entry %+v", e)
		}
	}
	if es[0].Recipient != "friend@remote.example" || es[0].Domain != "remote.example" || es[0].Notify != "FAILURE,DELAY" || !strings.EqualFold(es[0].ORcpt, "rfc822;friend@remote.example") {
		t.Errorf("first entry %+v", es[0])
	}
	// The message is stored once: bob's entry and both queue rows share it.
	if es[0].MessageID != bob[0].MessageID || es[1].MessageID != bob[0].MessageID {
		t.Errorf("message stored more than once: %d %d %d", es[0].MessageID, es[1].MessageID, bob[0].MessageID)
	}
}

func TestMXRefusesAuthAndRelay(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	if ehlo := c.ehlo("client.example.net"); hasPrefixIn(ehlo, "AUTH") {
		t.Fatalf("the MX offers AUTH: %q", ehlo)
	}
	c.write("AUTH PLAIN " + plain("alice@example.org", "x") + "\r\n")
	if code, msg := c.reply(); code < 500 {
		t.Fatalf("AUTH on the MX: %d %s, want a 5xx refusal", code, msg)
	}
}

func TestMailLoopRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(strings.Repeat("Received: from a by b; Thu, 26 Nov 2026 10:00:00 +0000\r\n", 50) + "Subject: loop\r\n\r\nx\r\n.\r\n")
	c.expectReply(554, "5.4.6")
	ts.expectNothingStored()
	// 49 of them plus ours is still fine.
	c.send("sender@example.net", []string{"alice@example.org"}, strings.Repeat("Received: from a by b; Thu, 26 Nov 2026 10:00:00 +0000\r\n", 49)+"Subject: ok\r\n\r\nx\r\n")
}

func hasPrefixIn(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), prefix) {
			return true
		}
	}
	return false
}

// TestMXForwardsAliasToRemote: an alias with a target in another domain is
// accepted on the MX without authentication; the local target gets its copy
// and the remote one is queued with the original sender and ORCPT.
func TestMXForwardsAliasToRemote(t *testing.T) {
	ts := newTestServer(t, nil)
	if err := ts.st.AddAlias(context.Background(), "fwd@example.org", []string{"friend@remote.example", "alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	c.expect("RCPT TO:<friend@remote.example>", 554, "5.7.1") // still no open relay
	qid := queueID(t, c.send("sender@example.net", []string{"fwd@example.org"}, "Subject: fwd\r\n\r\nforward me\r\n"))
	if n := len(ts.inbox("alice@example.org")); n != 1 {
		t.Fatalf("alice has %d messages, want 1", n)
	}
	es, err := ts.st.QueueEntries(context.Background())
	if err != nil || len(es) != 1 {
		t.Fatalf("queue: %+v %v", es, err)
	}
	if e := es[0]; e.QueueID != qid || e.From != "sender@example.net" || e.Recipient != "friend@remote.example" || e.ORcpt != "rfc822;fwd@example.org" {
		t.Errorf("forward entry %+v", e)
	}
}

// TestSubmissionSlowsGuessing: after DelayAfter failures every further AUTH
// waits a growing delay before its answer, the right password too (a
// guesser cannot take a slow answer for a failure and hang up); then the
// IP is refused, the right password too (454 4.7.0).
func TestSubmissionSlowsGuessing(t *testing.T) {
	const step = 80 * time.Millisecond
	ts := newSubmission(t, func(c *smtpd.Config) {
		c.AuthFailDelay = 0
		c.Throttle = &auth.Throttle{MaxPerIP: 8, Window: time.Minute, Cooldown: time.Minute,
			DelayAfter: 5, DelayStep: step, MaxDelay: time.Second}
	})
	c := ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	timedAuth := func(pass string, code int, enhanced string) time.Duration {
		start := time.Now()
		c.expect("AUTH PLAIN "+plain("alice@example.org", pass), code, enhanced)
		return time.Since(start)
	}
	for i := 0; i < 5; i++ {
		timedAuth(fmt.Sprint("guess", i), 535, "5.7.8") // no delay due yet (not timed: argon2id under load)
	}
	if d := timedAuth("guess5", 535, "5.7.8"); d < step {
		t.Errorf("6th attempt answered after %v, want at least %v", d, step)
	}
	if d := timedAuth("guess6", 535, "5.7.8"); d < 2*step {
		t.Errorf("7th attempt answered after %v, want a growing delay (at least %v)", d, 2*step)
	}
	// The right password waits as long, and succeeds: success forgets the
	// account's failures, not the IP's.
	if d := timedAuth("alice-secret", 235, "2.0.0"); d < 3*step {
		t.Errorf("right password after 7 failures answered after %v, want at least %v", d, 3*step)
	}
	// A new connection from the same IP: one more failure reaches 8, then
	// the IP is refused whatever the password.
	c = ts.dial()
	c.ehlo("client.example.net")
	c.startTLS(ts.clientTLS)
	c.ehlo("client.example.net")
	timedAuth("guess7", 535, "5.7.8")
	timedAuth("alice-secret", 454, "4.7.0")
}
