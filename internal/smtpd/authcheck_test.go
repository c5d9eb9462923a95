package smtpd_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
	"github.com/postern-mail/postern/internal/msgauth"
	"github.com/postern-mail/postern/internal/smtpd"
)

// checker adapts msgauth to smtpd, as internal/server does.
type checker struct{ c *msgauth.Checker }

func (c checker) Check(ctx context.Context, ip net.IP, helo, from string, msg io.Reader) (smtpd.CheckResult, error) {
	res, err := c.c.Check(ctx, ip, helo, from, msg)
	if err != nil {
		return smtpd.CheckResult{}, err
	}
	return smtpd.CheckResult{Header: res.Header, Verdict: smtpd.Verdict(res.Verdict), Enhanced: res.Enhanced, Reason: res.Reason}, nil
}

func newAuthServer(t *testing.T) *testServer {
	z := dnstest.Zone(t,
		`pass.test. TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`reject.test. TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.reject.test. TXT "v=DMARC1; p=reject"`,
		`quarantine.test. TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.quarantine.test. TXT "v=DMARC1; p=quarantine"`,
	)
	z["temperror.test."] = []dns.RR{dnstest.ServFail("temperror.test.")}
	res := dnsx.New(dnstest.Start(t, z), 2*time.Second)
	return newTestServer(t, func(cfg *smtpd.Config) {
		cfg.Checker = checker{msgauth.New(msgauth.Config{Hostname: testHostname, Resolver: res})}
	})
}

func authMessage(from, extra string) string {
	return "From: <" + from + ">\r\nTo: <alice@example.org>\r\n" + extra + "Subject: auth\r\n\r\nbody\r\n"
}

func TestDMARCRejectGets550(t *testing.T) {
	ts := newAuthServer(t)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@reject.test>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(authMessage("sender@reject.test", "") + ".\r\n")
	if text := c.expectReply(550, "5.7.1"); !strings.Contains(text, "DMARC") {
		t.Errorf("reply %q", text)
	}
	ts.expectNothingStored()
	// The session goes on.
	c.send("sender@pass.test", []string{"alice@example.org"}, authMessage("sender@pass.test", ""))
}

func TestDMARCQuarantineGoesToJunk(t *testing.T) {
	ts := newAuthServer(t)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.send("sender@quarantine.test", []string{"alice@example.org"}, authMessage("sender@quarantine.test", ""))
	if n := len(ts.inbox("alice@example.org")); n != 0 {
		t.Errorf("%d messages in INBOX", n)
	}
	junk := ts.mailbox("alice@example.org", "Junk")
	if len(junk) != 1 {
		t.Fatalf("%d messages in Junk", len(junk))
	}
	fields, _ := splitHeader(t, junk[0].Data, 4)
	if !strings.HasPrefix(fields[0], "Return-Path: ") || !strings.HasPrefix(fields[1], "Delivered-To: ") ||
		!strings.HasPrefix(fields[2], "Authentication-Results: "+testHostname+";") || !strings.HasPrefix(fields[3], "Received: ") {
		t.Errorf("trace fields: %q", fields)
	}
	if !strings.Contains(fields[2], "spf=fail") || !strings.Contains(fields[2], "dmarc=fail") {
		t.Errorf("results: %s", fields[2])
	}
}

func TestTempErrorGets451(t *testing.T) {
	ts := newAuthServer(t)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@temperror.test>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("DATA", 354, "")
	c.write(authMessage("sender@temperror.test", "") + ".\r\n")
	c.expectReply(451, "4.7.24")
	ts.expectNothingStored()
}

// Incoming Authentication-Results fields claiming our authserv-id are
// dropped (RFC 8601 5); others stay.
func TestForgedAuthResultsDropped(t *testing.T) {
	forged := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.test\r\n" +
		"X-Before: 1\r\n" +
		"Authentication-Results: (a comment) MX.Example.ORG 1;\r\n\tdmarc=pass header.from=bank.test\r\n" +
		"Authentication-Results: \"mx.example.org\"; spf=pass\r\n" +
		"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n" +
		"Authentication-Results: mx.example.org.evil; none\r\n"
	for _, withChecker := range []bool{true, false} {
		var ts *testServer
		if withChecker {
			ts = newAuthServer(t)
		} else {
			ts = newTestServer(t, nil)
		}
		c := ts.dial()
		c.ehlo("client.example.net")
		c.send("sender@pass.test", []string{"alice@example.org"}, authMessage("sender@pass.test", forged))
		msgs := ts.inbox("alice@example.org")
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		data := msgs[0].Data
		want := 0
		if withChecker {
			want = 1
			if !strings.Contains(data, "Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=sender@pass.test") {
				t.Errorf("no results of ours:\n%s", data)
			}
		}
		if n := strings.Count(strings.ToLower(data), "authentication-results: mx.example.org;"); n != want {
			t.Errorf("checker=%v: %d fields claim us:\n%s", withChecker, n, data)
		}
		for _, gone := range []string{"header.d=bank.test", "header.from=bank.test", `"mx.example.org"`} {
			if strings.Contains(data, gone) {
				t.Errorf("checker=%v: forged field kept (%s):\n%s", withChecker, gone, data)
			}
		}
		for _, kept := range []string{"X-Before: 1\r\n", "Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n",
			"Authentication-Results: mx.example.org.evil; none\r\n", "Subject: auth\r\n\r\nbody\r\n"} {
			if !strings.Contains(data, kept) {
				t.Errorf("checker=%v: lost %q:\n%s", withChecker, kept, data)
			}
		}
	}
}

// Authenticated submission is never checked (the resolver here answers
// nothing, so a check would defer the message) and its header is left as
// the user wrote it.
func TestSubmissionSkipsSenderChecks(t *testing.T) {
	sub := newSubmission(t, func(cfg *smtpd.Config) {
		cfg.Checker = checker{msgauth.New(msgauth.Config{Hostname: testHostname, Resolver: dnsx.New("127.0.0.1:1", time.Second)})}
	})
	c := sub.dial()
	c.ehlo("client.example.net")
	c.startTLS(sub.clientTLS)
	c.ehlo("client.example.net")
	c.expect("AUTH PLAIN "+plain("alice@example.org", "alice-secret"), 235, "2.0.0")
	c.send("alice@example.org", []string{"bob@example.org"}, authMessage("alice@example.org",
		"Authentication-Results: mx.example.org; dkim=pass header.d=alice's own\r\n"))
	bob := sub.inbox("bob@example.org")
	if len(bob) != 1 {
		t.Fatalf("%d messages", len(bob))
	}
	if strings.Count(bob[0].Data, "Authentication-Results:") != 1 || !strings.Contains(bob[0].Data, "alice's own") {
		t.Errorf("submission changed Authentication-Results:\n%s", bob[0].Data)
	}
}
