package audit_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/audit"
	"github.com/postern-mail/postern/internal/smtpd"
)

var wordlist = []string{"alice", "bob", "carol", "dave", "root", "admin", "# a comment", "", "alice"}

// Postern's own MX: VRFY says nothing (252), EXPN is not implemented, RCPT
// tells users apart, STARTTLS with its self-signed certificate, no relay.
func TestPosternSMTP(t *testing.T) {
	addr := startPostern(t)
	o := fastOptions(addr)
	o.Users, o.Domain = wordlist, "example.org"
	r := runAudit(t, "smtp", o)

	if r.Protocol != "smtp" || r.Target != addr || !strings.HasPrefix(r.Banner, "220 mx.example.org") {
		t.Errorf("protocol %q target %q banner %q", r.Protocol, r.Target, r.Banner)
	}
	if r.VRFY != "non-committal" || r.EXPN != "disabled" {
		t.Errorf("vrfy %q expn %q, want non-committal and disabled", r.VRFY, r.EXPN)
	}
	noFinding(t, r, "vrfy-enabled")
	noFinding(t, r, "expn-enabled")
	if !r.TLS.Offered || r.TLS.Version != "TLS1.3" || !r.TLS.SelfSigned || !strings.Contains(r.TLS.CertSubject, "mx.example.org") || r.TLS.Expires == "" {
		t.Errorf("tls %+v", r.TLS)
	}
	wantFinding(t, r, "tls-cert-self-signed", audit.Low)
	if !slices.Contains(r.Extensions, "STARTTLS") || slices.Contains(r.ExtensionsAfterTLS, "STARTTLS") || !slices.Contains(r.ExtensionsAfterTLS, "PIPELINING") {
		t.Errorf("extensions %v, after TLS %v", r.Extensions, r.ExtensionsAfterTLS)
	}
	noFinding(t, r, "auth-before-tls")
	noFinding(t, r, "starttls-injection")
	noFinding(t, r, "starttls-missing")
	u := r.Users
	if u.Method != "rcpt" || u.Tried != 6 || !reflect.DeepEqual(u.Valid, []string{"alice@example.org", "bob@example.org"}) || u.CatchAll || !u.Complete {
		t.Errorf("users %+v", u)
	}
	wantFinding(t, r, "users-enumerated", audit.Medium)
	if r.Relay.Tested != 16 || r.Relay.Open || len(r.Relay.Accepted) != 0 {
		t.Errorf("relay %+v", r.Relay)
	}
	noFinding(t, r, "open-relay")
	if r.Worst() == audit.High {
		t.Errorf("a high finding against Postern's defaults: %v", ids(r))
	}
}

// Postern's harvesting defence with its default thresholds (3 unknown
// recipients, then growing delays; 20 per IP, then 421 at connect), the
// delay scaled down for the test: the audit reports the tarpit and the
// throttling, finds the users it reached, and claims nothing about the
// names it could not ask about.
func TestPosternHarvestingDefence(t *testing.T) {
	t.Parallel()
	addr := startPosternWith(t, func(c *smtpd.Config) {
		c.UnknownRcptDelayAfter, c.UnknownRcptDelay, c.UnknownRcptMax = 3, 40*time.Millisecond, 10
		c.UnknownRcptPerIP, c.UnknownRcptWindow, c.UnknownRcptCooldown = 20, 10*time.Minute, 10*time.Minute
	})
	names := []string{"alice", "bob"}
	for i := 0; i < 28; i++ {
		names = append(names, fmt.Sprintf("nobody%02d", i))
	}
	o := fastOptions(addr)
	o.Users, o.Domain = names, "example.org"
	o.SlowReply, o.MaxReconnects = 30*time.Millisecond, 2
	r := runAudit(t, "smtp", o)
	if testing.Verbose() {
		r.WriteText(os.Stderr)
	}
	u := r.Users
	if u.Method != "rcpt" || !u.Tarpit || !u.Throttled || u.Complete ||
		!reflect.DeepEqual(u.Valid, []string{"alice@example.org", "bob@example.org"}) || len(u.Inconclusive) == 0 {
		t.Errorf("users %+v", u)
	}
	for _, v := range u.Valid {
		if strings.Contains(v, "nobody") {
			t.Errorf("false positive %s", v)
		}
	}
	wantFinding(t, r, "enumeration-defended", audit.Info)
	wantFinding(t, r, "users-enumerated", audit.Low)
	// The relay check ran before enumeration got us blocked.
	if r.Relay.Tested != 16 || r.Relay.Open || len(r.Errors) != 0 {
		t.Errorf("relay %+v errors %v", r.Relay, r.Errors)
	}
	noFinding(t, r, "rcpt-enumeration-unlimited")
	ev := strings.Join(r.Finding("enumeration-defended").Evidence, "\n")
	if !strings.Contains(ev, "421") || !strings.Contains(ev, "tarpit") {
		t.Errorf("evidence %q", ev)
	}
}

// The JSON document keeps DESIGN.md's field names.
func TestJSONContract(t *testing.T) {
	addr := startPostern(t)
	o := fastOptions(addr)
	o.Users, o.Domain = []string{"alice", "nobody"}, "example.org"
	r := runAudit(t, "smtp", o)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, buf.String())
	}
	for _, k := range []string{"target", "protocol", "banner", "software", "extensions", "tls", "users", "relay", "smuggling", "findings"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("missing top-level %q", k)
		}
	}
	sub := map[string][]string{
		"tls":       {"offered", "version", "cipher", "cert_subject", "self_signed", "expires"},
		"users":     {"method", "tried", "valid", "catch_all", "throttled", "tarpit", "greylisted"},
		"relay":     {"tested", "open", "accepted"},
		"smuggling": {"tested", "accepted_sequences"},
	}
	for obj, keys := range sub {
		m, _ := doc[obj].(map[string]any)
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("missing %s.%s", obj, k)
			}
		}
	}
	fs, _ := doc["findings"].([]any)
	if len(fs) == 0 {
		t.Fatal("no findings")
	}
	for _, k := range []string{"id", "severity", "title", "evidence", "fix"} {
		if _, ok := fs[0].(map[string]any)[k]; !ok {
			t.Errorf("missing findings[0].%s", k)
		}
	}
	var text bytes.Buffer
	r.WriteText(&text)
	for _, want := range []string{"postern audit smtp " + addr, "MEDIUM", "[users-enumerated]", "fix:", "alice@example.org"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// A server that leaks users through VRFY and names its version: auto picks
// VRFY and finds exactly the real users; AUTH PLAIN before TLS is high.
func TestVRFYLeak(t *testing.T) {
	users := map[string]bool{"alice@example.net": true, "bob@example.net": true}
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP Exim 4.96 Thu, 26 Nov 2026 10:00:00 +0000",
		handle: smtpPeer{ehlo: []string{"PIPELINING", "VRFY", "AUTH PLAIN LOGIN"}, users: users,
			vrfy: func(c *fakeConn, arg string, known bool) string {
				if known || arg == "postmaster" {
					return "250 2.1.5 <" + arg + ">"
				}
				return "550 5.1.1 <" + arg + ">: User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay = wordlist, "example.net", true
	r := runAudit(t, "smtp", o)
	if r.Software != "Exim" || r.Version != "4.96" {
		t.Errorf("software %q %q", r.Software, r.Version)
	}
	wantFinding(t, r, "banner-version-leak", audit.Medium)
	wantFinding(t, r, "auth-before-tls", audit.High)
	wantFinding(t, r, "starttls-missing", audit.Medium)
	wantFinding(t, r, "vrfy-enabled", audit.Medium)
	if r.VRFY != "reveals users" {
		t.Errorf("vrfy %q", r.VRFY)
	}
	u := r.Users
	if u.Method != "vrfy" || !reflect.DeepEqual(u.Valid, []string{"alice@example.net", "bob@example.net"}) || u.Tried != 6 || len(u.Inconclusive) != 0 {
		t.Errorf("users %+v", u)
	}
	// One connection for the audit, one for the baseline and the guesses.
	if n := f.Conns(); n > 3 {
		t.Errorf("%d connections; guesses should share one", n)
	}
	if !reflect.DeepEqual(r.AuthBeforeTLS, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("auth before TLS %v", r.AuthBeforeTLS)
	}
}

// VRFY is off but EXPN expands lists and names users: auto picks EXPN.
func TestEXPNLeak(t *testing.T) {
	users := map[string]bool{"carol@example.net": true, "staff@example.net": true}
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP Sendmail 8.17.1/8.17.1; Thu, 26 Nov 2026 10:00:00 GMT",
		handle: smtpPeer{users: users,
			vrfy: func(c *fakeConn, arg string, known bool) string { return "502 5.7.0 VRFY disabled" },
			expn: func(c *fakeConn, arg string, known bool) string {
				switch {
				case arg == "staff@example.net":
					return "250-2.1.5 <alice@example.net>\r\n250 2.1.5 <bob@example.net>"
				case known || arg == "postmaster":
					return "250 2.1.5 <" + arg + ">"
				}
				return "550 5.1.1 " + arg + "... User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay = []string{"carol", "staff", "dave"}, "example.net", true
	r := runAudit(t, "smtp", o)
	if r.Software != "Sendmail" || r.Version != "8.17.1" || r.VRFY != "disabled" || r.EXPN != "reveals users" {
		t.Errorf("software %q %q vrfy %q expn %q", r.Software, r.Version, r.VRFY, r.EXPN)
	}
	wantFinding(t, r, "expn-enabled", audit.Medium)
	if r.Users.Method != "expn" || !reflect.DeepEqual(r.Users.Valid, []string{"carol@example.net", "staff@example.net"}) ||
		!reflect.DeepEqual(r.Users.Expanded, map[string][]string{"staff@example.net": {"alice@example.net", "bob@example.net"}}) {
		t.Errorf("users %+v", r.Users)
	}
}

// VRFY answers 252 for everything, as nmap misreads: never a user from it.
func TestVRFY252NotAUser(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.Method, o.NoRelay = wordlist, "example.net", "vrfy", true
	r := runAudit(t, "smtp", o)
	if r.Users.Method != "vrfy" || len(r.Users.Valid) != 0 || r.Users.Methods["vrfy"] != "non-committal" {
		t.Errorf("users %+v", r.Users)
	}
	noFinding(t, r, "vrfy-enabled")
	// auto falls back to RCPT, which does tell.
	o.Method = "auto"
	r = runAudit(t, "smtp", o)
	if r.Users.Method != "rcpt" || !reflect.DeepEqual(r.Users.Valid, []string{"alice@example.net"}) {
		t.Errorf("auto: users %+v", r.Users)
	}
}

// A catch-all accepts every RCPT: no user is reported, catch_all is set.
func TestCatchAll(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{rcpt: func(c *fakeConn, arg string, known bool) string {
			if strings.HasSuffix(arg, "@example.net") {
				return "250 2.1.5 Ok"
			}
			return "554 5.7.1 Relay access denied"
		}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain = wordlist, "example.net"
	r := runAudit(t, "smtp", o)
	u := r.Users
	if !u.CatchAll || len(u.Valid) != 0 || u.Method != "none" || u.Tried != 0 {
		t.Errorf("users %+v", u)
	}
	wantFinding(t, r, "catch-all", audit.Info)
	noFinding(t, r, "users-enumerated")
	if r.Relay.Open {
		t.Errorf("relay %+v", r.Relay)
	}
}

// A tarpit answers slowly: flagged, and the answers are still right.
func TestTarpit(t *testing.T) {
	t.Parallel()
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"bob@example.net": true},
			rcpt: func(c *fakeConn, arg string, known bool) string {
				if c.rcpts > 2 {
					time.Sleep(120 * time.Millisecond)
				}
				if known {
					return "250 2.1.5 Ok"
				}
				return "550 5.1.1 User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay, o.SlowReply = wordlist[:4], "example.net", true, 80*time.Millisecond
	r := runAudit(t, "smtp", o)
	u := r.Users
	if !u.Tarpit || !reflect.DeepEqual(u.Valid, []string{"bob@example.net"}) {
		t.Errorf("users %+v", u)
	}
	wantFinding(t, r, "enumeration-defended", audit.Info)
	noFinding(t, r, "rcpt-enumeration-unlimited")
}

// A greylister answers 450 for real users: they are inconclusive, never
// valid, and greylisting is reported.
func TestGreylisting(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true},
			rcpt: func(c *fakeConn, arg string, known bool) string {
				if known {
					return "450 4.2.0 <" + arg + ">: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/"
				}
				return "550 5.1.1 User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay = wordlist, "example.net", true
	r := runAudit(t, "smtp", o)
	u := r.Users
	if !u.Greylisted || len(u.Valid) != 0 || !reflect.DeepEqual(u.Inconclusive, []string{"alice@example.net"}) {
		t.Errorf("users %+v", u)
	}
	wantFinding(t, r, "enumeration-defended", audit.Info)
}

// A server that sends 421 and hangs up after three recipients: the audit
// reconnects, reports throttling and still gets every answer.
func TestThrottleReconnect(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true, "dave@example.net": true},
			rcpt: func(c *fakeConn, arg string, known bool) string {
				if c.rcpts > 3 {
					return "421 4.7.0 mx.fake.test Too many errors, closing connection"
				}
				if known {
					return "250 2.1.5 Ok"
				}
				return "550 5.1.1 User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay = wordlist, "example.net", true
	o.MaxReconnects = 10
	r := runAudit(t, "smtp", o)
	u := r.Users
	if !u.Throttled || u.Reconnects == 0 || !u.Complete || !reflect.DeepEqual(u.Valid, []string{"alice@example.net", "dave@example.net"}) {
		t.Errorf("users %+v", u)
	}
	wantFinding(t, r, "enumeration-defended", audit.Info)
}

// Giving up after MaxReconnects leaves the rest inconclusive, not invalid.
func TestThrottleGiveUp(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{rcpt: func(c *fakeConn, arg string, known bool) string {
			if c.rcpts > 2 {
				return "CLOSE"
			}
			return "550 5.1.1 User unknown"
		}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay, o.MaxReconnects = wordlist, "example.net", true, 1
	r := runAudit(t, "smtp", o)
	u := r.Users
	if !u.Throttled || u.Complete || len(u.Valid) != 0 || len(u.Inconclusive) == 0 {
		t.Errorf("users %+v", u)
	}
}

// A server that refuses new connections with 421 for a cool-down (per-IP
// throttling): guesses are inconclusive, never invalid, and the audit
// stops retrying after MaxReconnects.
func TestThrottleAtGreeting(t *testing.T) {
	f := startFake(t, &fakeServer{
		greetFn: func(n int) string {
			if n > 2 {
				return "421 4.7.0 mx.fake.test Too many unknown recipients from your IP, try again later"
			}
			return "220 mx.fake.test ESMTP"
		},
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true},
			rcpt: func(c *fakeConn, arg string, known bool) string {
				if c.rcpts > 4 {
					return "CLOSE"
				}
				if known {
					return "250 2.1.5 Ok"
				}
				return "550 5.1.1 User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay, o.MaxReconnects = wordlist, "example.net", true, 2
	r := runAudit(t, "smtp", o)
	u := r.Users
	if !u.Throttled || u.Complete || !reflect.DeepEqual(u.Valid, []string{"alice@example.net"}) || len(u.Inconclusive) != 4 {
		t.Errorf("users %+v", u)
	}
	ev := strings.Join(r.Finding("enumeration-defended").Evidence, "\n")
	if !strings.Contains(ev, "server closed the connection") {
		t.Errorf("evidence %q", ev)
	}
	// The audit's own, the enumeration's, then two refused reconnections.
	if n := f.Conns(); n != 4 {
		t.Errorf("%d connections: retries are not bounded", n)
	}
}

// Concurrency spreads guesses over connections; rate bounds them.
func TestConcurrencyAndRate(t *testing.T) {
	t.Parallel()
	var names []string
	for i := 0; i < 20; i++ {
		names = append(names, "user"+string(rune('a'+i)))
	}
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"userc@example.net": true, "users@example.net": true}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay, o.Concurrency = names, "example.net", true, 4
	var calls atomic.Int64
	o.Progress = func(done, total int) { calls.Add(1) }
	r := runAudit(t, "smtp", o)
	if !reflect.DeepEqual(r.Users.Valid, []string{"userc@example.net", "users@example.net"}) || r.Users.Tried != 20 {
		t.Errorf("users %+v", r.Users)
	}
	if calls.Load() != 20 {
		t.Errorf("progress called %d times", calls.Load())
	}
	if n := f.Conns(); n < 4 {
		t.Errorf("%d connections with --concurrency 4", n)
	}

	o.Users, o.Concurrency, o.Rate, o.Progress = names[:6], 2, 20, nil
	start := time.Now()
	runAudit(t, "smtp", o)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("6 guesses at 20/s took %s", d)
	}
}

// An open relay accepts outside recipients: reported open (high), and with
// RelayData the harmless test message goes to RelayTo only.
func TestOpenRelay(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{rcpt: func(c *fakeConn, arg string, known bool) string {
			return "250 2.1.5 Ok"
		}}.handler()})
	o := fastOptions(f.addr)
	o.Domain, o.RelayTo = "example.net", "relay-check@example.com"
	r := runAudit(t, "smtp", o)
	// The three variants addressed to the server's own domain are what any
	// catch-all accepts: not counted.
	if r.Relay.Tested != 16 || !r.Relay.Open || len(r.Relay.Accepted) != 13 || len(r.Relay.DataAccepted) != 0 {
		t.Errorf("relay %+v", r.Relay)
	}
	wantFinding(t, r, "open-relay", audit.High)
	wantFinding(t, r, "relay-catch-all-only", audit.Info)
	if len(f.Messages()) != 0 {
		t.Errorf("a message was sent without RelayData")
	}
	// Each of nmap's variants is there.
	for _, want := range []string{
		"MAIL FROM:<> -> RCPT TO:<relay-check@example.com>",
		"MAIL FROM:<antispam@[127.0.0.1]> -> RCPT TO:<relay-check%example.com@[127.0.0.1]>",
		`MAIL FROM:<antispam@[127.0.0.1]> -> RCPT TO:<"relay-check@example.com">`,
		"MAIL FROM:<antispam@[127.0.0.1]> -> RCPT TO:<@[127.0.0.1]:relay-check@example.com>",
		"MAIL FROM:<antispam@[127.0.0.1]> -> RCPT TO:<example.com!relay-check@[127.0.0.1]>",
	} {
		found := false
		for _, a := range r.Relay.Accepted {
			found = found || a == want
		}
		if !found {
			t.Errorf("variant %q missing from %v", want, r.Relay.Accepted)
		}
	}

	o.RelayData = true
	r = runAudit(t, "smtp", o)
	if len(r.Relay.DataAccepted) != 13 {
		t.Errorf("relay with data %+v", r.Relay)
	}
	msgs := f.Messages()
	if len(msgs) != 13 || !strings.Contains(msgs[0], "To: <relay-check@example.com>") || !strings.Contains(msgs[0], "harmless") {
		t.Errorf("%d messages; first %q", len(msgs), msgs)
	}
	// A RelayData check needs an explicit recipient.
	o.RelayTo = ""
	if _, err := audit.Run(t.Context(), "smtp", o); err == nil {
		t.Error("RelayData without RelayTo accepted")
	}
}

// A server that answers pipelined clear text inside TLS is reported.
func TestSTARTTLSInjection(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP", tls: fakeTLS(t), injectable: true,
		starttlsVerb: "STARTTLS", starttlsReply: "220 2.0.0 Ready to start TLS",
		handle: smtpPeer{ehlo: []string{"STARTTLS", "PIPELINING"}}.handler()})
	o := fastOptions(f.addr)
	o.NoRelay = true
	r := runAudit(t, "smtp", o)
	wantFinding(t, r, "starttls-injection", audit.High)
	if r.TLS.Version == "" || !r.TLS.SelfSigned {
		t.Errorf("tls %+v", r.TLS)
	}
}

func TestUsageAndConnectionErrors(t *testing.T) {
	for _, o := range []audit.Options{{Target: "nohostport"}, {Target: "127.0.0.1:25", Method: "finger"}} {
		if _, err := audit.Run(t.Context(), "smtp", o); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%+v: err %v", o, err)
		}
	}
	if _, err := audit.Run(t.Context(), "nntp", audit.Options{Target: "127.0.0.1:25"}); err == nil {
		t.Error("nntp accepted")
	}
	// A server that refuses the session.
	f := startFake(t, &fakeServer{greeting: "554 5.3.2 go away", handle: smtpPeer{}.handler()})
	r, err := audit.Run(t.Context(), "smtp", fastOptions(f.addr))
	if err == nil || r == nil || r.Banner != "554 5.3.2 go away" {
		t.Errorf("refused session: %v %+v", err, r)
	}
}

// A hostile banner cannot write escape sequences to the auditor's
// terminal.
func TestHostileBanner(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test \x1b[2J\x1b]0;pwned\x07 ESMTP \xc2\x9b31m \xff",
		handle: smtpPeer{}.handler()})
	o := fastOptions(f.addr)
	o.NoRelay = true
	r := runAudit(t, "smtp", o)
	var text strings.Builder
	r.WriteText(&text)
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\xff"} {
		if strings.Contains(r.Banner, bad) || strings.Contains(text.String(), bad) {
			t.Errorf("control or invalid byte %q reached the report: %q", bad, r.Banner)
		}
	}
	if want := `220 mx.fake.test \x1b[2J\x1b]0;pwned\a ESMTP \u009b31m \xff`; r.Banner != want {
		t.Errorf("banner %q, want %q", r.Banner, want)
	}
}

// A refusal on policy grounds (5.7.1) is not "no such user".
func TestPolicyRefusalInconclusive(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true},
			rcpt: func(c *fakeConn, arg string, known bool) string {
				switch {
				case known:
					return "250 2.1.5 Ok"
				case strings.HasPrefix(arg, "root@"):
					return "550 5.7.1 <" + arg + ">: Recipient address rejected: Access denied"
				}
				return "550 5.1.1 <" + arg + ">: User unknown"
			}}.handler()})
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay = wordlist, "example.net", true
	r := runAudit(t, "smtp", o)
	if u := r.Users; !reflect.DeepEqual(u.Valid, []string{"alice@example.net"}) || !reflect.DeepEqual(u.Inconclusive, []string{"root@example.net"}) {
		t.Errorf("users %+v", u)
	}
}

// The whole audit stops at its deadline and says so; answers so far stay.
func TestDeadline(t *testing.T) {
	t.Parallel()
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP",
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true},
			rcpt: func(c *fakeConn, arg string, known bool) string {
				time.Sleep(100 * time.Millisecond)
				if known {
					return "250 2.1.5 Ok"
				}
				return "550 5.1.1 User unknown"
			}}.handler()})
	var names []string
	for i := 0; i < 50; i++ {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	o := fastOptions(f.addr)
	o.Users, o.Domain, o.NoRelay, o.Deadline = append([]string{"alice"}, names...), "example.net", true, 1500*time.Millisecond
	start := time.Now()
	r := runAudit(t, "smtp", o)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("audit took %s with a 1.5 s deadline", d)
	}
	if r.Users.Complete || !reflect.DeepEqual(r.Users.Valid, []string{"alice@example.net"}) || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "deadline") {
		t.Errorf("users %+v errors %v", r.Users, r.Errors)
	}
}

// Certificate expiry is judged on the injected clock.
func TestCertificateExpiry(t *testing.T) {
	addr := startPostern(t)
	o := fastOptions(addr)
	o.NoRelay = true
	r := runAudit(t, "smtp", o)
	noFinding(t, r, "tls-cert-expired")
	noFinding(t, r, "tls-cert-expiring")
	expires, err := time.Parse(time.RFC3339, r.TLS.Expires)
	if err != nil {
		t.Fatalf("tls.expires %q: %v", r.TLS.Expires, err)
	}
	for _, tc := range []struct {
		now time.Time
		id  string
		sev audit.Severity
	}{{expires.Add(time.Hour), "tls-cert-expired", audit.Medium}, {expires.Add(-7 * 24 * time.Hour), "tls-cert-expiring", audit.Low}} {
		o.Now = func() time.Time { return tc.now }
		r := runAudit(t, "smtp", o)
		wantFinding(t, r, tc.id, tc.sev)
		if r.TLS.Expired != (tc.id == "tls-cert-expired") {
			t.Errorf("at %s: tls %+v", tc.now, r.TLS)
		}
	}
}

// A server that still speaks TLS 1.0/1.1 to clients that ask is reported,
// although a modern client negotiates TLS 1.3 with it.
func TestOldTLSAccepted(t *testing.T) {
	old := fakeTLS(t).Clone()
	old.MinVersion = tls.VersionTLS10
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP", tls: old,
		starttlsVerb: "STARTTLS", starttlsReply: "220 2.0.0 Ready to start TLS",
		handle: smtpPeer{ehlo: []string{"STARTTLS"}}.handler()})
	o := fastOptions(f.addr)
	o.NoRelay = true
	r := runAudit(t, "smtp", o)
	if r.TLS.Version != "TLS1.3" {
		t.Errorf("tls %+v", r.TLS)
	}
	wantFinding(t, r, "tls-old-version-accepted", audit.Medium)

	// Postern allows TLS 1.2 and up.
	r = runAudit(t, "smtp", noRelayOptions(startPostern(t)))
	noFinding(t, r, "tls-old-version-accepted")
}

// noRelayOptions are fastOptions without the relay check.
func noRelayOptions(addr string) audit.Options {
	o := fastOptions(addr)
	o.NoRelay = true
	return o
}
