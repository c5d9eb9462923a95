package smtpd_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/smtpd"
)

// TestIPLiteralRecipientsRefused: by default every address-literal
// recipient is refused as relaying, the server's own address included.
func TestIPLiteralRecipientsRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	for _, to := range []string{"alice@[127.0.0.1]", "alice@[IPv6:::1]", "alice@[192.0.2.1]", "alice%example.org@[127.0.0.1]"} {
		c.expect("RCPT TO:<"+to+">", 554, "5.7.1")
	}
	c.expect("DATA", 502, "5.5.1") // no recipient was taken
	ts.expectNothingStored()
}

// TestIPLiteralRecipientsLocal: with LocalIPLiterals, user@[own IP] is
// delivered as user@example.org (the parent domain of the host name);
// other literals are still refused, unknown users still get 550 5.1.1,
// and the nmap relay tricks behind our literal reach nobody elsewhere.
func TestIPLiteralRecipientsLocal(t *testing.T) {
	ts := newTestServer(t, func(c *smtpd.Config) {
		c.LocalIPLiterals = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	})
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	for _, tc := range []struct {
		to       string
		code     int
		enhanced string
	}{
		{"alice@[127.0.0.1]", 250, "2.0.0"},
		{"bob@[IPv6:::1]", 250, "2.0.0"},
		{"carol@[ipv6:0:0:0:0:0:0:0:1]", 250, "2.0.0"},
		{"alice@[::1]", 554, "5.7.1"},            // IPv6 needs its tag (RFC 5321 4.1.3)
		{"alice@[IPv6:127.0.0.1]", 554, "5.7.1"}, // not IPv6
		{"alice@[192.0.2.1]", 554, "5.7.1"},
		{"alice@[127.0.0.2]", 554, "5.7.1"},
		{"alice@[tag:127.0.0.1]", 554, "5.7.1"},
		{"nobody@[127.0.0.1]", 550, "5.1.1"},
		{"to%remote.example@[127.0.0.1]", 550, "5.1.1"},
		{"to@remote.example@[127.0.0.1]", 550, "5.1.1"},
		{"remote.example!to@[127.0.0.1]", 550, "5.1.1"},
	} {
		c.expect("RCPT TO:<"+tc.to+">", tc.code, tc.enhanced)
	}
	c.expect("DATA", 354, "")
	c.write("Subject: literal\r\n\r\nhi\r\n.\r\n")
	c.expectReply(250, "2.0.0")
	got := ts.inboxCounts()
	if got["alice@example.org"] != 1 || got["bob@example.org"] != 1 || got["carol@example.org"] != 1 {
		t.Fatalf("inbox counts %v, want one each", got)
	}
	if m := ts.inbox("alice@example.org")[0]; !strings.Contains(m.Data, "Delivered-To: alice@example.org\r\n") {
		t.Errorf("alice's copy lacks Delivered-To: alice@example.org: %q", m.Data)
	}
}
