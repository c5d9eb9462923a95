package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// relayVariant is one MAIL FROM / RCPT TO pair of nmap's smtp-open-relay.
type relayVariant struct {
	from, to string
	// viaLocal is set when the recipient's last domain is the target's own,
	// so a catch-all accepts it without relaying anything.
	viaLocal bool
}

// relayVariants returns nmap's 16 combinations for relay address to,
// target IP ip and the target's domain.
func relayVariants(to, ip, domain string) []relayVariant {
	if strings.Contains(ip, ":") {
		ip = "IPv6:" + ip // RFC 5321 4.1.3 address literal
	}
	at := strings.LastIndexByte(to, '@')
	user, host := to[:at], to[at+1:]
	const from = "antispam"
	ipFrom := "<" + from + "@[" + ip + "]>"
	return []relayVariant{
		{"<>", "<" + to + ">", false},
		{"<" + from + ">", "<" + to + ">", false},
		{"<" + from + "@" + domain + ">", "<" + to + ">", false},
		{ipFrom, "<" + to + ">", false},
		{ipFrom, "<" + user + "%" + host + "@[" + ip + "]>", false},
		{ipFrom, "<" + user + "%" + host + "@" + domain + ">", true},
		{ipFrom, `<"` + to + `">`, false},
		{ipFrom, `<"` + user + "%" + host + `">`, false},
		{ipFrom, "<" + to + "@[" + ip + "]>", false},
		{ipFrom, `<"` + to + `"@[` + ip + "]>", false},
		{ipFrom, "<" + to + "@" + domain + ">", true},
		{ipFrom, "<@[" + ip + "]:" + to + ">", false},
		{ipFrom, "<@" + domain + ":" + to + ">", false},
		{ipFrom, "<" + host + "!" + user + ">", false},
		{ipFrom, "<" + host + "!" + user + "@[" + ip + "]>", false},
		{ipFrom, "<" + host + "!" + user + "@" + domain + ">", true},
	}
}

func (v relayVariant) String() string { return "MAIL FROM:" + v.from + " -> RCPT TO:" + v.to }

// checkRelay tries every variant on one reused connection (RSET between),
// reconnecting on 421 or a lost connection. A variant counts only if the
// recipient is accepted; with RelayData a harmless message is then sent
// to RelayTo to confirm.
func checkRelay(ctx context.Context, o *Options, r *Report) {
	domain := o.Domain
	if domain == "" {
		domain = r.Hostname
	}
	useTLS := r.TLS.Version != "" && !r.TLS.Implicit
	var s *smtpSession
	defer func() {
		if s != nil {
			s.quit()
		}
	}()
	ip := o.host()
	reconnects, refusals := 0, 0
	catchAll := r.Users.CatchAll
	catchAllKnown := catchAll
	var evidence []string
	var openVariants, localOnly []string
	variants := relayVariants(o.RelayTo, ip, domain)
	r.Relay.To = o.RelayTo
	for i := 0; i < len(variants); i++ {
		v := variants[i]
		if ctx.Err() != nil {
			return
		}
		if s == nil {
			var err error
			s, err = openSMTP(ctx, o, useTLS)
			if err != nil {
				r.errorf("relay check: %v", err)
				return
			}
			if a, ok := s.nc.RemoteAddr().(*net.TCPAddr); ok && a.IP.String() != ip {
				ip = a.IP.String()
				variants = relayVariants(o.RelayTo, ip, domain)
				v = variants[i]
			}
		}
		if !catchAllKnown {
			// Variants addressed to the server's own domain are accepted
			// by a catch-all without relaying: ask about a name that
			// cannot exist there first.
			catchAllKnown = true
			catchAll = relayCatchAll(s, o, domain)
			if _, err := s.cmd("RSET"); err != nil {
				s.Close()
				s = nil
				i--
				continue
			}
		}
		mr, err := s.cmd("MAIL FROM:" + v.from)
		var rr reply
		if err == nil && mr.code == 250 {
			rr, err = s.cmd("RCPT TO:" + v.to)
		}
		if err != nil || mr.code == 421 || rr.code == 421 {
			s.Close()
			s, refusals = nil, 0
			if reconnects >= o.MaxReconnects {
				r.errorf("relay check: gave up after %d reconnections", reconnects)
				return
			}
			reconnects++
			i-- // retry this variant
			select {
			case <-time.After(o.ReconnectDelay):
			case <-ctx.Done():
				return
			}
			continue
		}
		r.Relay.Tested++
		if rr.code == 250 || rr.code == 251 {
			if v.viaLocal && catchAll {
				localOnly = append(localOnly, v.String())
			} else {
				r.Relay.Accepted = append(r.Relay.Accepted, v.String())
				openVariants = append(openVariants, v.String())
				if len(evidence) < 8 {
					evidence = append(evidence, "C: MAIL FROM:"+v.from, "S: "+mr.text(), "C: RCPT TO:"+v.to, "S: "+rr.text())
				}
				if o.RelayData {
					ok, ev, err := sendRelayMessage(s, o, v)
					evidence = append(evidence, ev...)
					if ok {
						r.Relay.DataAccepted = append(r.Relay.DataAccepted, v.String())
					}
					if err != nil {
						s.Close()
						s = nil
						continue
					}
				}
			}
		}
		if rr.permanent() || mr.permanent() {
			refusals++
		}
		if _, err := s.cmd("RSET"); err != nil || (o.RecycleAfter > 0 && refusals >= o.RecycleAfter) {
			// A fresh session before the server's error tarpit starts.
			s.quit()
			s, refusals = nil, 0
		}
	}
	r.Relay.Open = len(openVariants) > 0
	if r.Relay.Open {
		title := fmt.Sprintf("Open relay: %d of %d variants accepted a recipient outside the server's domains without authentication", len(openVariants), r.Relay.Tested)
		if len(r.Relay.DataAccepted) > 0 {
			title += fmt.Sprintf(", and %d test messages were accepted after DATA", len(r.Relay.DataAccepted))
		}
		r.add(Finding{ID: "open-relay", Severity: High, Title: title, Evidence: append(evidence, openVariants...),
			Fix: "Relay only for authenticated clients and trusted networks (Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination; keep mynetworks small)."})
	}
	if len(localOnly) > 0 {
		r.add(Finding{ID: "relay-catch-all-only", Severity: Info,
			Title:    "Some relay variants addressed to the server's own domain were accepted, but the domain is a catch-all: not counted as relaying",
			Evidence: localOnly,
			Fix:      "Nothing to fix if the catch-all is intended; make sure such addresses are delivered locally, never routed onwards."})
	}
}

// sendRelayMessage sends a harmless test message after an accepted
// relay recipient and reports whether the server took it.
func sendRelayMessage(s *smtpSession, o *Options, v relayVariant) (bool, []string, error) {
	dr, err := s.cmd("DATA")
	ev := []string{"C: DATA", "S: " + dr.text()}
	if err != nil {
		return false, ev, err
	}
	if dr.code != 354 {
		return false, ev, nil
	}
	msg := "From: <antispam@postern-audit.invalid>\r\n" +
		"To: <" + o.RelayTo + ">\r\n" +
		"Subject: postern audit: open relay test\r\n" +
		"Date: " + o.Now().UTC().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <relaytest." + o.randomLocal() + "@postern-audit.invalid>\r\n" +
		"\r\n" +
		"This harmless message was sent by `postern audit` to check whether\r\n" +
		o.Target + " relays mail for anyone (" + v.String() + ").\r\n" +
		"If you received it, that server is an open relay.\r\n.\r\n"
	if err := s.writeRaw([]byte(msg)); err != nil {
		return false, ev, err
	}
	er, err := s.readReply()
	ev = append(ev, "C: (test message) .", "S: "+er.text())
	if err != nil {
		return false, ev, err
	}
	if er.code == 421 {
		return false, ev, errors.New(er.text())
	}
	return er.code == 250, ev, nil
}

// relayCatchAll reports whether the server accepts a random local part at
// domain, in a transaction of its own on s.
func relayCatchAll(s *smtpSession, o *Options, domain string) bool {
	if _, err := s.cmd("RSET"); err != nil {
		return false
	}
	if mr, err := s.cmd("MAIL FROM:<>"); err != nil || mr.code != 250 {
		return false
	}
	rr, err := s.cmd("RCPT TO:<" + o.randomLocal() + "@" + domain + ">")
	return err == nil && (rr.code == 250 || rr.code == 251)
}
