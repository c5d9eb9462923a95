package msgauth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

var (
	edPub, edKey = func() (ed25519.PublicKey, ed25519.PrivateKey) {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		return pub, key
	}()
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSA(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// txt is a TXT record in zone-file syntax, its text split into 255-byte strings.
func txt(name, text string) string {
	var parts []string
	for len(text) > 255 {
		parts = append(parts, `"`+text[:255]+`"`)
		text = text[255:]
	}
	parts = append(parts, `"`+text+`"`)
	return name + " TXT " + strings.Join(parts, " ")
}

func edRecord() string {
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub)
}

func rsaRecord(t testing.TB) string {
	der, err := x509.MarshalPKIXPublicKey(&testRSA(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}

// zone is the test world: sender domains with SPF, DKIM and DMARC records.
func zone(t *testing.T) map[string][]dns.RR {
	z := dnstest.Zone(t,
		txt("pass.test.", "v=spf1 ip4:127.0.0.1 -all"),
		txt("fail.test.", "v=spf1 ip4:192.0.2.1 -all"),
		txt("softfail.test.", "v=spf1 ip4:192.0.2.1 ~all"),
		txt("neutral.test.", "v=spf1 ?all"),
		"none.test. A 192.0.2.7",
		txt("permerror.test.", "v=spf1 bogus:x ip4:127.0.0.1 -all"),
		txt("mx.pass.test.", "v=spf1 a -all"),
		"mx.pass.test. A 127.0.0.1",
		// DKIM-signing domains.
		txt("ed._domainkey.signed.test.", edRecord()),
		txt("rsa._domainkey.signed.test.", rsaRecord(t)),
		txt("signed.test.", "v=spf1 ip4:192.0.2.1 -all"),
		// DMARC.
		txt("reject.test.", "v=spf1 ip4:192.0.2.1 -all"),
		txt("_dmarc.reject.test.", "v=DMARC1; p=reject"),
		txt("ed._domainkey.reject.test.", edRecord()),
		txt("quarantine.test.", "v=spf1 ip4:192.0.2.1 -all"),
		txt("_dmarc.quarantine.test.", "v=DMARC1; p=quarantine; rua=mailto:d@quarantine.test"),
		txt("monitor.test.", "v=spf1 ip4:192.0.2.1 -all"),
		txt("_dmarc.monitor.test.", "v=DMARC1; p=none"),
		txt("strict.test.", "v=spf1 ip4:127.0.0.1 -all"),
		txt("bounce.strict.test.", "v=spf1 ip4:127.0.0.1 -all"),
		txt("_dmarc.strict.test.", "v=DMARC1; p=reject; adkim=s; aspf=s"),
		txt("ed._domainkey.sub.strict.test.", edRecord()),
		txt("relaxed.test.", "v=spf1 -all"),
		txt("bounce.relaxed.test.", "v=spf1 ip4:127.0.0.1 -all"),
		txt("_dmarc.relaxed.test.", "v=DMARC1; p=reject; sp=quarantine"),
		"a.b.relaxed.test. A 192.0.2.9",
		// Temporary failures.
		txt("dmarcfail.test.", "v=spf1 ip4:127.0.0.1 -all"),
	)
	for _, n := range []string{"temperror.test.", "_dmarc.dmarcfail.test.", "gone._domainkey.signed.test."} {
		z[n] = []dns.RR{dnstest.ServFail(n)}
	}
	return z
}

func newChecker(t *testing.T, action SPFAction) *Checker {
	addr := dnstest.Start(t, zone(t))
	return New(Config{Hostname: "mx.postern.test", Resolver: dnsx.New(addr, 2*time.Second), SPFFail: action})
}

func message(from, body string) string {
	return "From: Someone <" + from + ">\r\nTo: <rcpt@postern.test>\r\nSubject: test\r\nMessage-ID: <1@x>\r\n\r\n" + body
}

func sign(t *testing.T, msg, domain, selector string, key crypto.Signer) string {
	t.Helper()
	var b strings.Builder
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func check(t *testing.T, c *Checker, helo, mailFrom, msg string) *Result {
	t.Helper()
	res, err := c.Check(context.Background(), net.ParseIP("127.0.0.1"), helo, mailFrom, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Header, "Authentication-Results: mx.postern.test;\r\n\t") || !strings.HasSuffix(res.Header, "\r\n") {
		t.Errorf("header: %q", res.Header)
	}
	return res
}

func TestSPF(t *testing.T) {
	c := newChecker(t, SPFJunk)
	for _, tc := range []struct {
		domain  string
		result  string
		verdict Verdict
	}{
		{"pass.test", "pass", Accept},
		{"fail.test", "fail", Junk},
		{"softfail.test", "softfail", Accept},
		{"neutral.test", "neutral", Accept},
		{"none.test", "none", Accept},
		{"nxdomain.test", "none", Accept},
		{"temperror.test", "temperror", TempFail},
		{"permerror.test", "permerror", Accept},
	} {
		t.Run(tc.result+"-"+tc.domain, func(t *testing.T) {
			res := check(t, c, "mx.pass.test", "alice@"+tc.domain, message("alice@"+tc.domain, "hi\r\n"))
			if string(res.SPF.Result) != tc.result || res.Verdict != tc.verdict {
				t.Errorf("spf=%s verdict=%v, want %s %v (%v)", res.SPF.Result, res.Verdict, tc.result, tc.verdict, res.SPF.Err)
			}
			if !strings.Contains(res.Header, "spf="+tc.result) || !strings.Contains(res.Header, "smtp.mailfrom=alice@"+tc.domain) {
				t.Errorf("header: %s", res.Header)
			}
			if res.SPFHelo.Result != "pass" || !strings.Contains(res.Header, "spf=pass smtp.helo=mx.pass.test") {
				t.Errorf("helo: %v; %s", res.SPFHelo, res.Header)
			}
			if tc.verdict == TempFail && res.Enhanced != [3]int{4, 7, 24} {
				t.Errorf("enhanced %v", res.Enhanced)
			}
		})
	}
}

func TestSPFNullSender(t *testing.T) {
	c := newChecker(t, SPFJunk)
	res := check(t, c, "mx.pass.test", "", message("mailer-daemon@mx.pass.test", "bounce\r\n"))
	if res.SPF.Result != "pass" || res.SPF.Identity != "postmaster@mx.pass.test" {
		t.Errorf("%+v", res.SPF)
	}
	res = check(t, c, "fail.test", "", message("mailer-daemon@fail.test", "bounce\r\n"))
	if res.SPF.Result != "fail" || res.Verdict != Junk {
		t.Errorf("%+v %v", res.SPF, res.Verdict)
	}
}

func TestSPFFailActions(t *testing.T) {
	for action, want := range map[SPFAction]Verdict{SPFJunk: Junk, SPFReject: Reject, SPFTag: Accept} {
		c := newChecker(t, action)
		res := check(t, c, "fail.test", "alice@fail.test", message("alice@fail.test", "x\r\n"))
		if res.Verdict != want {
			t.Errorf("%s: verdict %v, want %v", action, res.Verdict, want)
		}
		if want == Reject && res.Enhanced != [3]int{5, 7, 23} {
			t.Errorf("enhanced %v", res.Enhanced)
		}
	}
	// tag: a temporary error cannot change the verdict, so it is accepted
	// (and tagged temperror).
	c := newChecker(t, SPFTag)
	if res := check(t, c, "x.test", "a@temperror.test", message("a@temperror.test", "x\r\n")); res.Verdict != Accept || !strings.Contains(res.Header, "spf=temperror") {
		t.Errorf("%v %s", res.Verdict, res.Header)
	}
}

func TestDKIM(t *testing.T) {
	c := newChecker(t, SPFTag)
	msg := message("alice@signed.test", "Hello,\r\nthis is signed.\r\n")
	both := sign(t, sign(t, msg, "signed.test", "rsa", testRSA(t)), "signed.test", "ed", edKey)

	res := check(t, c, "x.test", "alice@signed.test", both)
	if len(res.DKIM) != 2 || res.DKIM[0].Result != "pass" || res.DKIM[1].Result != "pass" {
		t.Fatalf("%+v", res.DKIM)
	}
	if res.DKIM[0].Algorithm != "ed25519-sha256" || res.DKIM[1].Algorithm != "rsa-sha256" {
		t.Errorf("algorithms %+v", res.DKIM)
	}
	for _, want := range []string{"dkim=pass header.d=signed.test header.s=ed header.a=ed25519-sha256", "header.s=rsa header.a=rsa-sha256", "dmarc=none header.from=signed.test"} {
		if !strings.Contains(res.Header, want) {
			t.Errorf("header lacks %q:\n%s", want, res.Header)
		}
	}

	// Body altered in transit.
	altered := strings.Replace(both, "this is signed", "this is forged", 1)
	res = check(t, c, "x.test", "alice@signed.test", altered)
	if len(res.DKIM) != 2 || res.DKIM[0].Result != "fail" || res.DKIM[1].Result != "fail" || !strings.Contains(res.Header, "dkim=fail reason=") {
		t.Errorf("altered: %+v\n%s", res.DKIM, res.Header)
	}
	// A signed header altered.
	res = check(t, c, "x.test", "alice@signed.test", strings.Replace(both, "Subject: test", "Subject: tset", 1))
	if res.DKIM[0].Result != "fail" {
		t.Errorf("header altered: %+v", res.DKIM)
	}

	// Unsigned.
	res = check(t, c, "x.test", "alice@signed.test", msg)
	if len(res.DKIM) != 0 || !strings.Contains(res.Header, "dkim=none") {
		t.Errorf("unsigned: %+v %s", res.DKIM, res.Header)
	}

	// No key published: permerror; key lookup fails: temperror.
	res = check(t, c, "x.test", "alice@signed.test", sign(t, msg, "signed.test", "missing", edKey))
	if res.DKIM[0].Result != "permerror" {
		t.Errorf("missing key: %+v", res.DKIM)
	}
	res = check(t, c, "x.test", "alice@signed.test", sign(t, msg, "signed.test", "gone", edKey))
	if res.DKIM[0].Result != "temperror" || res.Verdict != Accept {
		t.Errorf("servfail key: %+v %v", res.DKIM, res.Verdict)
	}
}

func TestDMARC(t *testing.T) {
	c := newChecker(t, SPFJunk)
	for _, tc := range []struct {
		name     string
		mailFrom string
		msg      string
		dmarc    string
		verdict  Verdict
	}{
		{"pass by dkim", "alice@reject.test", sign(t, message("alice@reject.test", "x\r\n"), "reject.test", "ed", edKey), "pass", Accept},
		{"pass by spf", "alice@pass.test", message("alice@pass.test", "x\r\n"), "none", Accept},
		{"fail reject", "alice@reject.test", message("alice@reject.test", "x\r\n"), "fail", Reject},
		{"fail reject, spf aligned elsewhere", "alice@pass.test", message("alice@reject.test", "x\r\n"), "fail", Reject},
		{"fail quarantine", "alice@quarantine.test", message("alice@quarantine.test", "x\r\n"), "fail", Junk},
		{"fail none", "alice@monitor.test", message("alice@monitor.test", "x\r\n"), "fail", Accept},
		{"strict spf misaligned", "x@bounce.strict.test", message("alice@strict.test", "x\r\n"), "fail", Reject},
		{"strict spf aligned", "x@strict.test", message("alice@strict.test", "x\r\n"), "pass", Accept},
		{"strict dkim misaligned", "x@none.test", sign(t, message("alice@strict.test", "x\r\n"), "sub.strict.test", "ed", edKey), "fail", Reject},
		{"relaxed spf aligned", "x@bounce.relaxed.test", message("alice@relaxed.test", "x\r\n"), "pass", Accept},
		{"relaxed dkim aligned", "x@none.test", sign(t, message("alice@reject.test", "x\r\n"), "reject.test", "ed", edKey), "pass", Accept},
		{"subdomain policy from org domain", "x@none.test", message("alice@a.b.relaxed.test", "x\r\n"), "fail", Junk},
		{"dmarc lookup fails", "x@dmarcfail.test", message("alice@dmarcfail.test", "x\r\n"), "temperror", TempFail},
		{"two From fields", "alice@pass.test", "From: <a@pass.test>\r\n" + message("alice@reject.test", "x\r\n"), "permerror", Junk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := check(t, c, "x.test", tc.mailFrom, tc.msg)
			if res.DMARC.Result != tc.dmarc || res.Verdict != tc.verdict {
				t.Errorf("dmarc=%s verdict=%v, want %s %v (%v)\n%s", res.DMARC.Result, res.Verdict, tc.dmarc, tc.verdict, res.DMARC.Err, res.Header)
			}
			if !strings.Contains(res.Header, "dmarc="+tc.dmarc) {
				t.Errorf("header: %s", res.Header)
			}
			if tc.verdict == Reject && (res.Enhanced != [3]int{5, 7, 1} || res.Reason == "") {
				t.Errorf("reject: %v %q", res.Enhanced, res.Reason)
			}
		})
	}
}

// A DKIM key that cannot be fetched for an aligned signature, where DMARC
// would otherwise reject, defers the message rather than rejecting it.
func TestDMARCTempErrorDefers(t *testing.T) {
	z := dnstest.Zone(t, txt("_dmarc.flaky.test.", "v=DMARC1; p=reject"))
	z["k._domainkey.flaky.test."] = []dns.RR{dnstest.ServFail("k._domainkey.flaky.test.")}
	addr := dnstest.Start(t, z)
	c := New(Config{Hostname: "mx.postern.test", Resolver: dnsx.New(addr, 2*time.Second)})
	res := check(t, c, "x.test", "a@none.test", sign(t, message("a@flaky.test", "x\r\n"), "flaky.test", "k", edKey))
	if res.Verdict != TempFail || res.Enhanced[0] != 4 {
		t.Errorf("verdict %v %v; %s", res.Verdict, res.Enhanced, res.Header)
	}
}

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.org": "example.org", "a.b.example.org": "example.org", "x.example.co.uk": "example.co.uk",
		"Mail.Example.ORG.": "example.org", "a.b.c.test": "c.test",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSkipNetworks(t *testing.T) {
	c := newChecker(t, SPFReject)
	c.cfg.Skip = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	res, err := c.Check(context.Background(), net.ParseIP("127.0.0.1"), "x.test", "a@fail.test", strings.NewReader(message("a@fail.test", "x\r\n")))
	if err != nil || !res.Skipped || res.Verdict != Accept || res.Header != "" || res.Summary() != "skipped" {
		t.Errorf("%+v %v", res, err)
	}
}

// slowReader hands out its message in pieces, pausing before each.
type slowReader struct {
	s     string
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), 16)], r.s)
	r.s = r.s[n:]
	return n, nil
}

// A message that takes longer to arrive than the timeout still gets its
// DMARC lookup (the timeout bounds lookups, not the transfer).
func TestSlowTransferDoesNotEatTimeout(t *testing.T) {
	c := newChecker(t, SPFJunk)
	c.cfg.Timeout = 300 * time.Millisecond
	msg := sign(t, message("alice@reject.test", strings.Repeat("a line of text\r\n", 8)), "reject.test", "ed", edKey)
	res, err := c.Check(context.Background(), net.ParseIP("127.0.0.1"), "x.test", "alice@reject.test", &slowReader{s: msg, pause: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.DMARC.Result != "pass" || res.Verdict != Accept {
		t.Errorf("%v\n%s", res.Verdict, res.Header)
	}
}
