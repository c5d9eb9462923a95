package audit_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/audit"
)

// imapPeer answers CAPABILITY with caps before TLS and tlsCaps after, and
// ID with id (empty: no ID support).
func imapPeer(caps, tlsCaps, id string) func(c *fakeConn, line string) string {
	return func(c *fakeConn, line string) string {
		f := strings.Fields(line + " x")
		tag, verb := f[0], strings.ToUpper(f[1])
		switch verb {
		case "CAPABILITY":
			cs := caps
			if c.isTLS {
				cs = tlsCaps
			}
			return "* CAPABILITY " + cs + "\r\n" + tag + " OK Pre-login capabilities listed, post-login capabilities have more."
		case "ID":
			if id == "" {
				return tag + " BAD Unknown command"
			}
			return "* ID " + id + "\r\n" + tag + " OK ID completed."
		case "LOGOUT":
			return "* BYE Logging out\r\n" + tag + " OK Logout completed."
		}
		return tag + " BAD Error in IMAP command received by server."
	}
}

// A Dovecot-like IMAP server that allows LOGIN and AUTH=PLAIN before TLS,
// names itself in the greeting and tells its version through ID.
func TestIMAPLeaky(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "* OK [CAPABILITY IMAP4rev1 ID STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.",
		tls: fakeTLS(t), starttlsVerb: "STARTTLS", starttlsReply: "OK Begin TLS negotiation now.",
		handle: imapPeer("IMAP4rev1 ID STARTTLS AUTH=PLAIN", "IMAP4rev1 ID AUTH=PLAIN AUTH=LOGIN",
			`("name" "Dovecot" "version" "2.3.19.1")`)})
	r := runAudit(t, "imap", fastOptions(f.addr))
	wantFinding(t, r, "banner-software-leak", audit.Low)
	wantFinding(t, r, "plaintext-login-before-tls", audit.High)
	wantFinding(t, r, "imap-id-leak", audit.Medium)
	wantFinding(t, r, "tls-cert-self-signed", audit.Low)
	noFinding(t, r, "starttls-injection")
	if r.Software != "Dovecot" || r.Version != "2.3.19.1" || !strings.Contains(r.Implementation, `"Dovecot"`) {
		t.Errorf("software %q %q implementation %q", r.Software, r.Version, r.Implementation)
	}
	if !reflect.DeepEqual(r.Extensions, []string{"IMAP4rev1", "ID", "STARTTLS", "AUTH=PLAIN"}) {
		t.Errorf("capabilities %v", r.Extensions)
	}
	if !r.TLS.Offered || r.TLS.Version == "" || !reflect.DeepEqual(r.AuthAfterTLS, []string{"PLAIN", "LOGIN", "LOGIN-COMMAND"}) {
		t.Errorf("tls %+v auth after %v", r.TLS, r.AuthAfterTLS)
	}
}

// LOGINDISABLED before TLS and a plain greeting: nothing to report but the
// throwaway certificate. Then the same server with the injection bug.
func TestIMAPHardenedAndInjection(t *testing.T) {
	peer := func(injectable bool) *fakeServer {
		return &fakeServer{greeting: "* OK IMAP ready", injectable: injectable,
			tls: fakeTLS(t), starttlsVerb: "STARTTLS", starttlsReply: "OK Begin TLS negotiation now.",
			handle: imapPeer("IMAP4rev1 STARTTLS LOGINDISABLED", "IMAP4rev1 AUTH=PLAIN", "")}
	}
	f := startFake(t, peer(false))
	r := runAudit(t, "imap", fastOptions(f.addr))
	for _, id := range []string{"plaintext-login-before-tls", "banner-software-leak", "starttls-injection", "starttls-missing", "imap-id-leak"} {
		noFinding(t, r, id)
	}
	if len(r.AuthBeforeTLS) != 0 {
		t.Errorf("auth before TLS %v", r.AuthBeforeTLS)
	}

	g := startFake(t, peer(true))
	r = runAudit(t, "imap", fastOptions(g.addr))
	wantFinding(t, r, "starttls-injection", audit.High)
}

// Implicit TLS on a port that is not 993: --tls.
func TestIMAPImplicitTLS(t *testing.T) {
	f := startFake(t, &fakeServer{greeting: "* OK IMAP ready", handle: imapPeer("IMAP4rev1 AUTH=PLAIN", "", "")})
	tlsPeer := startTLSFake(t, f)
	o := fastOptions(tlsPeer)
	o.TLS = true
	r := runAudit(t, "imap", o)
	if !r.TLS.Implicit || r.TLS.Version == "" {
		t.Errorf("tls %+v", r.TLS)
	}
	noFinding(t, r, "plaintext-login-before-tls")
	noFinding(t, r, "starttls-missing")
	if !reflect.DeepEqual(r.AuthAfterTLS, []string{"PLAIN", "LOGIN-COMMAND"}) {
		t.Errorf("auth after TLS %v", r.AuthAfterTLS)
	}
}

// pop3Peer answers CAPA with caps (tlsCaps after STLS) and USER with user.
func pop3Peer(caps, tlsCaps []string, user string) func(c *fakeConn, line string) string {
	return func(c *fakeConn, line string) string {
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "CAPA":
			cs := caps
			if c.isTLS {
				cs = tlsCaps
			}
			return "+OK\r\n" + strings.Join(append(append([]string{}, cs...), "."), "\r\n")
		case "USER":
			return user
		case "QUIT":
			return "+OK Logging out."
		}
		return "-ERR Unknown command."
	}
}

func TestPOP3(t *testing.T) {
	peer := &fakeServer{greeting: "+OK Cyrus POP3 v2.4.17 server ready <1896.697170952@mx.fake.test>",
		tls: fakeTLS(t), starttlsVerb: "STLS", starttlsReply: "+OK Begin TLS negotiation now.",
		handle: pop3Peer([]string{"TOP", "UIDL", "USER", "STLS", "SASL PLAIN", "IMPLEMENTATION Cyrus POP3 v2.4.17"},
			[]string{"TOP", "USER", "SASL PLAIN LOGIN"}, "+OK")}
	f := startFake(t, peer)
	r := runAudit(t, "pop3", fastOptions(f.addr))
	wantFinding(t, r, "banner-version-leak", audit.Medium)
	wantFinding(t, r, "plaintext-login-before-tls", audit.High)
	wantFinding(t, r, "pop3-implementation-leak", audit.Medium)
	noFinding(t, r, "starttls-injection")
	if r.Software != "Cyrus" || r.Version != "2.4.17" || r.Implementation != "Cyrus POP3 v2.4.17" {
		t.Errorf("software %q %q implementation %q", r.Software, r.Version, r.Implementation)
	}
	if !reflect.DeepEqual(r.AuthBeforeTLS, []string{"USER", "PLAIN"}) || !reflect.DeepEqual(r.AuthAfterTLS, []string{"USER", "PLAIN", "LOGIN"}) || r.TLS.Version == "" {
		t.Errorf("auth %v / %v tls %+v", r.AuthBeforeTLS, r.AuthAfterTLS, r.TLS)
	}

	// Hardened: no USER in CAPA and USER refused before TLS; but STLS
	// answers pipelined CAPA inside TLS.
	hard := &fakeServer{greeting: "+OK ready", tls: fakeTLS(t), injectable: true,
		starttlsVerb: "STLS", starttlsReply: "+OK Begin TLS negotiation now.",
		handle: pop3Peer([]string{"TOP", "STLS"}, []string{"USER"}, "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")}
	g := startFake(t, hard)
	r = runAudit(t, "pop3", fastOptions(g.addr))
	noFinding(t, r, "plaintext-login-before-tls")
	noFinding(t, r, "banner-software-leak")
	wantFinding(t, r, "starttls-injection", audit.High)

	// USER works although CAPA does not say so: still found.
	sly := &fakeServer{greeting: "+OK ready", handle: pop3Peer([]string{"TOP"}, nil, "+OK send PASS")}
	h := startFake(t, sly)
	r = runAudit(t, "pop3", fastOptions(h.addr))
	wantFinding(t, r, "plaintext-login-before-tls", audit.High)
	wantFinding(t, r, "starttls-missing", audit.High)
}
