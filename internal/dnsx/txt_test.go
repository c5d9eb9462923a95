package dnsx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

func TestLookupTXT(t *testing.T) {
	z := dnstest.Zone(t,
		`example.test. TXT "v=spf1 " "mx -all"`,
		`example.test. A 192.0.2.1`,
		`alias.example.test. CNAME example.test.`,
		`_imaps._tcp.example.test. SRV 0 1 993 mail.example.test.`,
	)
	z["broken.test."] = []dns.RR{dnstest.ServFail("broken.test.")}
	r := New(dnstest.Start(t, z), 2*time.Second)
	ctx := context.Background()
	for _, name := range []string{"example.test", "ALIAS.example.test."} {
		txts, err := r.LookupTXT(ctx, name)
		if err != nil || len(txts) != 1 || txts[0] != "v=spf1 mx -all" {
			t.Errorf("%s: %q %v", name, txts, err)
		}
	}
	if txts, err := r.LookupTXT(ctx, "_imaps._tcp.example.test"); err != nil || len(txts) != 0 {
		t.Errorf("no data: %q %v", txts, err)
	}
	if _, err := r.LookupTXT(ctx, "nx.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nxdomain: %v", err)
	}
	if _, err := r.LookupTXT(ctx, "broken.test"); !IsTemporary(err) {
		t.Errorf("servfail: %v", err)
	}
	srvs, err := r.LookupSRV(ctx, "_imaps._tcp.example.test")
	if err != nil || len(srvs) != 1 || srvs[0].Port != 993 || srvs[0].Target != "mail.example.test." {
		t.Errorf("srv: %v %v", srvs, err)
	}
}
