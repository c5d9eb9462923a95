package audit

import (
	"strings"
	"testing"
)

func TestRelayVariants(t *testing.T) {
	v := relayVariants("relaytest@example.com", "192.0.2.1", "mx.example.org")
	if len(v) != 16 {
		t.Fatalf("%d variants, want nmap's 16", len(v))
	}
	seen := map[string]bool{}
	for _, x := range v {
		if seen[x.String()] {
			t.Errorf("duplicate variant %s", x)
		}
		seen[x.String()] = true
	}
	if got := v[11].String(); got != "MAIL FROM:<antispam@[192.0.2.1]> -> RCPT TO:<@[192.0.2.1]:relaytest@example.com>" {
		t.Errorf("source route variant %q", got)
	}
	v6 := relayVariants("relaytest@example.com", "::1", "mx.example.org")
	if !strings.Contains(v6[3].from, "@[IPv6:::1]>") {
		t.Errorf("IPv6 literal %q", v6[3].from)
	}
}
