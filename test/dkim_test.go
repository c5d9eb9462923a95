package e2e

// Interop tests of issue 6 (sender authentication): Postern's DKIM
// signatures checked by dkimpy (Debian's python3-dkim), dkimpy's checked by
// Postern's MX, and two Postern instances checking each other's mail with
// the DNS records `postern dns-records` prints. All DNS comes from the
// in-process server of internal/dnsx/dnstest, on loopback.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

// needDkimpy fails (under CI) or skips the test when python3-dkim, with
// python3-nacl for Ed25519 and python3-dnspython for the lookups, is
// missing.
func needDkimpy(t *testing.T) {
	t.Helper()
	py := python(t)
	dkimpyCheck.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
		defer cancel()
		dkimpyCheck.err = exec.CommandContext(ctx, py, "-c", "import dkim, dkim.dkimverify, nacl, dns.query").Run()
	})
	if dkimpyCheck.err != nil {
		needTool(t, "python3-dkim (dkimpy, with python3-nacl and python3-dnspython)",
			"install it with apt-get install -y python3-dkim python3-nacl")
	}
}

var dkimpyCheck struct {
	sync.Once
	err error
}

// testZone is a dnstest server whose records can be added to while it runs.
type testZone struct {
	*dnstest.Server
	rrs map[string][]dns.RR // by lower-case FQDN
}

func newTestZone(t *testing.T, records ...string) *testZone {
	t.Helper()
	z := &testZone{Server: dnstest.StartServer(t, nil), rrs: map[string][]dns.RR{}}
	z.add(t, records...)
	return z
}

// add publishes records in zone-file syntax next to those already there
// (a record already published is not added twice).
func (z *testZone) add(t *testing.T, records ...string) {
	t.Helper()
	touched := map[string]bool{}
	for _, s := range records {
		rr := dnstest.RR(t, s)
		name := strings.ToLower(dns.Fqdn(rr.Header().Name))
		dup := false
		for _, o := range z.rrs[name] {
			dup = dup || dns.IsDuplicate(o, rr)
		}
		if !dup {
			z.rrs[name] = append(z.rrs[name], rr)
			touched[name] = true
		}
	}
	for name := range touched {
		z.Set(name, z.rrs[name])
	}
}

// zoneRecords returns the records of `postern dns-records` output: its
// lines that are neither empty nor comments (";").
func zoneRecords(t *testing.T, out string) []string {
	t.Helper()
	var recs []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		recs = append(recs, l)
	}
	if len(recs) == 0 {
		t.Fatalf("dns-records printed no records:\n%s", out)
	}
	return recs
}

// dkimSelectors returns the DKIM selectors of the domain's records with the
// key type (k=) of each: "ed25519" or "rsa".
func dkimSelectors(t *testing.T, domain string, records []string) map[string]string {
	t.Helper()
	sels := map[string]string{}
	suffix := "._domainkey." + domain + "."
	for _, s := range records {
		rr := dnstest.RR(t, s)
		txt, ok := rr.(*dns.TXT)
		if !ok || !strings.HasSuffix(txt.Hdr.Name, suffix) {
			continue
		}
		v := strings.Join(txt.Txt, "")
		k := "rsa"
		for _, tag := range strings.Split(v, ";") {
			if name, val, ok := strings.Cut(strings.TrimSpace(tag), "="); ok && name == "k" {
				k = strings.TrimSpace(val)
			}
		}
		sels[strings.TrimSuffix(txt.Hdr.Name, suffix)] = k
	}
	return sels
}

// wantTwoKeys checks that a freshly added domain publishes one DKIM key of
// each type.
func wantTwoKeys(t *testing.T, sels map[string]string) {
	t.Helper()
	n := map[string]int{}
	for _, k := range sels {
		n[k]++
	}
	if len(sels) != 2 || n["ed25519"] != 1 || n["rsa"] != 1 {
		t.Fatalf("DKIM records %v, want one ed25519 key and one rsa key", sels)
	}
}

// dkimpySig is one signature as py/dkim_verify.py reports it.
type dkimpySig struct {
	D, S, A, C, H string
	Result        string `json:"result"`
	Error         string `json:"error"`
	DKIMVerify    string `json:"dkimverify"` // what dkimpy's dkimverify printed
}

// dkimpyVerify checks every DKIM signature of msg with dkimpy, looking the
// keys up at dnsAddr only; it returns the signatures and the names dkimpy
// looked up.
func dkimpyVerify(t *testing.T, dnsAddr string, msg string) ([]dkimpySig, []string) {
	t.Helper()
	var out struct {
		Signatures []dkimpySig `json:"signatures"`
		Queries    []string    `json:"queries"`
	}
	runPython(t, &out, msg, "dkim_verify.py", "--dns", dnsAddr)
	return out.Signatures, out.Queries
}

// sinkMessage is one message an smtpSink received.
type sinkMessage struct {
	From string
	To   []string
	Data string // as sent, CRLF line ends, dot-stuffing undone
}

// smtpSink is a minimal SMTP receiver, the MX of a remote domain: it
// accepts every message (plaintext, no extensions but 8BITMIME) and hands
// it over on msgs.
type smtpSink struct {
	l    net.Listener
	msgs chan sinkMessage
}

func startSink(t *testing.T, addr string) *smtpSink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s := &smtpSink{l: l, msgs: make(chan sinkMessage, 10)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *smtpSink) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 sink.remote.test ESMTP")
	var cur sinkMessage
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimRight(line, "\r\n"))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-sink.remote.test")
			say("250 8BITMIME")
		case strings.HasPrefix(cmd, "HELO"):
			say("250 sink.remote.test")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			cur = sinkMessage{From: sinkPath(line[10:])}
			say("250 2.1.0 OK")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			cur.To = append(cur.To, sinkPath(line[8:]))
			say("250 2.1.5 OK")
		case cmd == "DATA":
			say("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			cur.Data = b.String()
			s.msgs <- cur
			say("250 2.0.0 OK: queued as sink1")
		case cmd == "RSET" || cmd == "NOOP":
			say("250 2.0.0 OK")
		case cmd == "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			say("502 5.5.2 not implemented")
		}
	}
}

// sinkPath returns the <path> of a MAIL or RCPT argument, without the
// parameters that follow it.
func sinkPath(arg string) string {
	p, _, _ := strings.Cut(strings.TrimSpace(arg), " ")
	return p
}

// A message alice@a.test submits to a remote domain leaves Postern with two
// DKIM signatures (ed25519-sha256 and rsa-sha256) that dkimpy verifies
// against the records `postern dns-records a.test` prints, served by DNS.
func TestDKIMPosternSignedVerifiesWithDkimpy(t *testing.T) {
	t.Parallel()
	needDkimpy(t)
	port := commonPort(t, "127.0.0.2", "127.0.0.3")
	sink := startSink(t, net.JoinHostPort("127.0.0.3", itoa(port)))
	zone := newTestZone(t, "remote.test. 60 IN MX 10 mx.remote.test.", "mx.remote.test. 60 IN A 127.0.0.3")
	a := newPeer(t, "a.test", "127.0.0.2", port, zone.Addr, `retry = ["1s"]`, "alice")
	records := zoneRecords(t, a.cli("", "dns-records", "a.test"))
	sels := dkimSelectors(t, "a.test", records)
	wantTwoKeys(t, sels)
	zone.add(t, records...)
	a.start()

	body := "Hello,\n\n  runs   of spaces and trailing blanks   \n\ta tab; next, a line that starts with a dot:\n.signed by Postern\nFrom the start of a line.\n\n\n"
	r := a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test", "--header-from", "Alice <alice@a.test>",
		"--to", "carol@remote.test", "--subject", "signed by postern", "--message-id", "dkim-out-1@a.test", "--body", body)
	if r.Error != "" {
		t.Fatalf("submission: %s", r.Error)
	}
	queueID(t, r.Data)

	var m sinkMessage
	select {
	case m = <-sink.msgs:
	case <-time.After(deliveryTimeout):
		t.Fatalf("no message at the remote MX within %v; a.test's queue: %+v", deliveryTimeout, a.queueList())
	}
	if m.From != "<alice@a.test>" || len(m.To) != 1 || m.To[0] != "<carol@remote.test>" {
		t.Errorf("envelope from %s to %v, want <alice@a.test> to [<carol@remote.test>]", m.From, m.To)
	}
	if !strings.Contains(m.Data, ".signed by Postern\r\n") {
		t.Errorf("the message lost its line starting with a dot:\n%s", m.Data)
	}

	sigs, queries := dkimpyVerify(t, zone.Addr, m.Data)
	if len(sigs) != 2 {
		t.Fatalf("dkimpy found %d DKIM signatures, want 2:\n%s", len(sigs), m.Data)
	}
	seen := map[string]bool{}
	for _, s := range sigs {
		if s.Result != "pass" || s.DKIMVerify != "signature ok" {
			t.Errorf("dkimpy: signature s=%s a=%s: %s %s; dkimverify: %q", s.S, s.A, s.Result, s.Error, s.DKIMVerify)
		}
		if s.D != "a.test" {
			t.Errorf("signature s=%s has d=%s, want a.test", s.S, s.D)
		}
		k, ok := sels[s.S]
		if !ok {
			t.Errorf("signature selector %q is not among the published ones %v", s.S, sels)
		} else if want := k + "-sha256"; s.A != want {
			t.Errorf("signature s=%s has a=%s, want %s (its record has k=%s)", s.S, s.A, want, k)
		}
		seen[s.A] = true
		if !strings.Contains(strings.ToLower(s.H), "from") {
			t.Errorf("signature s=%s does not cover From: h=%s", s.S, s.H)
		}
	}
	if !seen["ed25519-sha256"] || !seen["rsa-sha256"] {
		t.Errorf("signature algorithms %v, want ed25519-sha256 and rsa-sha256", seen)
	}
	for sel := range sels {
		name := sel + "._domainkey.a.test."
		found := false
		for _, q := range queries {
			found = found || strings.EqualFold(dns.Fqdn(q), name)
		}
		if !found {
			t.Errorf("dkimpy did not look up %s in the test's DNS (it asked for %q)", name, queries)
		}
	}

	// The check has teeth: a changed body fails both signatures (where
	// dkimverify, which lets dkimpy's exception out, would die).
	altered := strings.Replace(m.Data, "signed by Postern", "changed in transit", 1)
	altSigs, _ := dkimpyVerify(t, zone.Addr, altered)
	if len(altSigs) != 2 {
		t.Errorf("dkimpy found %d signatures on the altered message, want 2", len(altSigs))
	}
	for _, s := range altSigs {
		if s.Result != "fail" || !strings.Contains(s.Error, "body hash mismatch") || s.DKIMVerify == "signature ok" {
			t.Errorf("altered message: signature s=%s: %s (%s), dkimverify %q; want a body hash mismatch", s.S, s.Result, s.Error, s.DKIMVerify)
		}
	}
}

// dkimpyKeys writes an Ed25519 and an RSA key in the forms dkimpy reads and
// returns their files and DKIM TXT records (zone-file syntax) for selectors
// "ed" and "rsa" of domain.
func dkimpyKeys(t *testing.T, domain string) (edFile, rsaFile string, records []string) {
	t.Helper()
	dir := t.TempDir()
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edFile = filepath.Join(dir, "ed.key")
	if err := os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(edPriv.Seed())), 0o600); err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile = filepath.Join(dir, "rsa.pem")
	if err := os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	records = []string{
		fmt.Sprintf("ed._domainkey.%s. 60 IN TXT %s", domain, txtStrings("v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(edPub))),
		fmt.Sprintf("rsa._domainkey.%s. 60 IN TXT %s", domain, txtStrings("v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))),
	}
	return edFile, rsaFile, records
}

// txtStrings writes v as the quoted strings of a TXT record, 255 bytes
// at most each.
func txtStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}

// authResults returns the results of the Authentication-Results fields of m
// whose authserv-id is id (unfolded, split at ';'), failing unless there
// is exactly one such field.
func authResults(t *testing.T, m mboxMessage, id string) []string {
	t.Helper()
	var mine []string
	for _, v := range m.Header["Authentication-Results"] {
		first, _, _ := strings.Cut(v, ";")
		if strings.EqualFold(strings.TrimSpace(first), id) {
			mine = append(mine, v)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d Authentication-Results fields of %s, want 1: %q", len(mine), id, m.Header["Authentication-Results"])
	}
	parts := strings.Split(mine[0], ";")
	var res []string
	for _, p := range parts[1:] {
		res = append(res, strings.Join(strings.Fields(p), " "))
	}
	return res
}

// wantResult checks that one of results starts with want.
func wantResult(t *testing.T, results []string, want string) {
	t.Helper()
	for _, r := range results {
		if strings.HasPrefix(r, want) {
			return
		}
	}
	t.Errorf("no result %q in Authentication-Results %q", want, results)
}

// reportTo makes s's helpers report to t (a subtest) until it ends.
func reportTo(t *testing.T, s *server) {
	prev := s.t
	s.t = t
	t.Cleanup(func() { s.t = prev })
}

// dkimSendResult is what py/dkim_send.py prints.
type dkimSendResult struct {
	sendResult
	Message string `json:"message"`
}

// Messages dkimpy signed, sent to Postern's MX from outside: both
// signatures verify (dkim=pass, with SPF and DMARC passing too), and a body
// changed after signing fails them, which with the sender's p=reject and no
// aligned SPF gets the message refused.
func TestDKIMDkimpySignedVerifiesInPostern(t *testing.T) {
	t.Parallel()
	needDkimpy(t)
	edFile, rsaFile, keyRecords := dkimpyKeys(t, "sender.test")
	zone := newTestZone(t, append(keyRecords,
		`sender.test. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`client.sender.test. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.sender.test. 60 IN TXT "v=DMARC1; p=reject"`,
	)...)

	s := newServer(t, "")
	s.render = func() string {
		return fmt.Sprintf(`hostname = %q
data_dir = "data"

[listen]
smtp = ["127.0.0.1:%d"]
admin = ["127.0.0.1:%d"]
submission = []
submissions = []
imap = []
imaps = []
pop3 = []
pop3s = []

[dns]
resolver = %q

[auth_checks]
enabled = true
skip_networks = []
timeout = "5s"

[limits]
shutdown_grace = "3s"
command_timeout = "30s"
data_timeout = "30s"
`, hostname, s.smtpPort, s.adminPort, zone.Addr)
	}
	s.writeConfig()
	s.addDomain("example.test")
	s.addUser("bob@example.test")
	s.start()

	send := func(t *testing.T, args ...string) dkimSendResult {
		t.Helper()
		var r dkimSendResult
		runPython(t, &r, "", "dkim_send.py", append([]string{"--port", itoa(s.smtpPort), "--helo", "client.sender.test",
			"--header-from", "Alice <alice@sender.test>", "--to", "bob@example.test",
			"--sign", "ed:sender.test:" + edFile + ":ed25519-sha256:relaxed/relaxed",
			"--sign", "rsa:sender.test:" + rsaFile + ":rsa-sha256:simple/simple"}, args...)...)
		if r.Error != "" {
			t.Fatalf("dkim_send.py: %s", r.Error)
		}
		if n := strings.Count(r.Message, "DKIM-Signature:"); n != 2 {
			t.Fatalf("dkimpy made %d signatures, want 2:\n%s", n, r.Message)
		}
		return r
	}

	t.Run("pass", func(t *testing.T) {
		reportTo(t, s)
		r := send(t, "--from", "alice@sender.test", "--subject", "signed by dkimpy", "--message-id", "dkimpy-1@sender.test")
		queueID(t, r.Data)
		m := wantOne(t, "bob's INBOX", bySubject(s.export("bob@example.test", ""), "signed by dkimpy"))
		res := authResults(t, m, hostname)
		wantResult(t, res, "spf=pass smtp.mailfrom=alice@sender.test")
		wantResult(t, res, "spf=pass smtp.helo=client.sender.test")
		wantResult(t, res, "dkim=pass header.d=sender.test header.s=ed header.a=ed25519-sha256")
		wantResult(t, res, "dkim=pass header.d=sender.test header.s=rsa header.a=rsa-sha256")
		wantResult(t, res, "dmarc=pass")
		if n := len(m.Header["Dkim-Signature"]); n != 2 {
			t.Errorf("the stored message has %d DKIM-Signature fields, want dkimpy's 2", n)
		}
		if !strings.Contains(m.Body, "\n.signed by dkimpy\n") || !strings.Contains(m.Body, "trailing blanks   \n") {
			t.Errorf("body not stored as sent:\n%s", m.Body)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		reportTo(t, s)
		// The envelope sender's domain has no SPF record, so only DKIM
		// could make DMARC pass, and it fails on the changed body.
		r := send(t, "--from", "bounces@other.test", "--subject", "tampered after dkimpy", "--message-id", "dkimpy-2@sender.test", "--tamper")
		wantCode(t, "DATA of a tampered message", r.Data, 550, "5.7.1")
		if got := bySubject(s.export("bob@example.test", ""), "tampered after dkimpy"); len(got) != 0 {
			t.Errorf("the tampered message was delivered: %q", got[0].Header["Authentication-Results"])
		}
	})
}

// Postern A (a.test) sends to Postern B (b.test), whose DNS holds the records
// A's `postern dns-records a.test` printed: B's Authentication-Results say
// spf=pass (MAIL FROM and HELO), dkim=pass for both of A's signatures and
// dmarc=pass.
func TestDKIMPeerToPeerPasses(t *testing.T) {
	t.Parallel()
	python(t)
	// Postern does not choose the source address of its outgoing
	// connections, so on loopback A's mail comes from 127.0.0.1, not from
	// the 127.0.0.2 it listens on: mx.a.test has both addresses, as a
	// server's sending address must be among its MX's for "v=spf1 mx".
	zone := newTestZone(t,
		"b.test. 60 IN MX 10 mx.b.test.", "mx.b.test. 60 IN A 127.0.0.3",
		"mx.a.test. 60 IN A 127.0.0.2", "mx.a.test. 60 IN A 127.0.0.1")
	port := commonPort(t, "127.0.0.2", "127.0.0.3")
	queue := `retry = ["1s"]`
	a := newPeer(t, "a.test", "127.0.0.2", port, zone.Addr, queue, "alice")
	b := newPeer(t, "b.test", "127.0.0.3", port, zone.Addr, queue, "bob")
	b.render = func() string {
		return b.configText() + "\n[auth_checks]\nenabled = true\nskip_networks = []\ntimeout = \"5s\"\n"
	}
	b.writeConfig()
	records := zoneRecords(t, a.cli("", "dns-records", "a.test"))
	sels := dkimSelectors(t, "a.test", records)
	wantTwoKeys(t, sels)
	zone.add(t, records...)
	a.start()
	b.start()
	t.Cleanup(func() {
		for _, p := range []*peer{a, b} {
			if p.running() {
				p.server.stop()
			}
		}
	})

	r := a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test", "--header-from", "Alice <alice@a.test>",
		"--to", "bob@b.test", "--subject", "a to b, authenticated", "--message-id", "dkim-peer-1@a.test",
		"--body", "Hello Bob,\n\nthis one should pass SPF, DKIM and DMARC.\n")
	if r.Error != "" {
		t.Fatalf("submission: %s", r.Error)
	}
	queueID(t, r.Data)
	m := waitMessage(t, b.server, "bob@b.test", "a to b, authenticated", deliveryTimeout)
	res := authResults(t, m, "mx.b.test")
	wantResult(t, res, "spf=pass smtp.mailfrom=alice@a.test")
	wantResult(t, res, "spf=pass smtp.helo=mx.a.test")
	for sel, k := range sels {
		wantResult(t, res, fmt.Sprintf("dkim=pass header.d=a.test header.s=%s header.a=%s-sha256", sel, k))
	}
	wantResult(t, res, "dmarc=pass (p=quarantine dis=none) header.from=a.test")
	if n := len(m.Header["Dkim-Signature"]); n != 2 {
		t.Errorf("b.test stored %d DKIM-Signature fields, want a.test's 2", n)
	}

	// Key rotation while A runs: once the new records that dns-records
	// prints are published, mail is signed with the new keys only, and
	// still passes.
	out := a.cli("", "domain", "dkim-rotate", "a.test")
	rotated := map[string]string{}
	for _, m := range rotatedRe.FindAllStringSubmatch(out, -1) {
		rotated[m[1]] = m[2]
	}
	wantTwoKeys(t, rotated)
	records = zoneRecords(t, a.cli("", "dns-records", "a.test"))
	all := dkimSelectors(t, "a.test", records)
	for sel := range sels {
		if _, ok := all[sel]; !ok {
			t.Errorf("after dkim-rotate, dns-records no longer lists the previous key %s: %v", sel, all)
		}
	}
	for sel := range rotated {
		if _, ok := all[sel]; !ok {
			t.Fatalf("after dkim-rotate, dns-records does not list the new key %s: %v", sel, all)
		}
	}
	zone.add(t, records...)
	r = a.submit(t, "ssl", "alice@a.test", "--from", "alice@a.test", "--header-from", "Alice <alice@a.test>",
		"--to", "bob@b.test", "--subject", "a to b, rotated keys", "--message-id", "dkim-peer-2@a.test",
		"--body", "Hello Bob,\n\nthis one is signed with the new keys.\n")
	if r.Error != "" {
		t.Fatalf("submission: %s", r.Error)
	}
	queueID(t, r.Data)
	m = waitMessage(t, b.server, "bob@b.test", "a to b, rotated keys", deliveryTimeout)
	res = authResults(t, m, "mx.b.test")
	for sel, k := range rotated {
		wantResult(t, res, fmt.Sprintf("dkim=pass header.d=a.test header.s=%s header.a=%s-sha256", sel, k))
	}
	for sel := range sels {
		for _, r := range res {
			if strings.Contains(r, "header.s="+sel+" ") {
				t.Errorf("signed with the retired key %s after dkim-rotate: %q", sel, r)
			}
		}
	}
	wantResult(t, res, "dmarc=pass")
	if n := len(m.Header["Dkim-Signature"]); n != 2 {
		t.Errorf("b.test stored %d DKIM-Signature fields after the rotation, want 2", n)
	}
}

// rotatedRe finds the new selectors in the output of dkim-rotate, e.g.
// "p202611c (ed25519-sha256)".
var rotatedRe = regexp.MustCompile(`\b(p[0-9]{6}[a-z]+) \((ed25519|rsa)-sha256\)`)
