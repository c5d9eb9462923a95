package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Run audits the target over protocol smtp, imap or pop3. The error is
// non-nil only for bad options (wrapping ErrUsage; the report is nil) or
// when the target cannot be talked to at all (the report then holds the
// error); everything else is in the report.
func Run(ctx context.Context, protocol string, o Options) (*Report, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Deadline)
	defer cancel()
	var r *Report
	var err error
	switch protocol {
	case "smtp":
		r, err = auditSMTP(ctx, &o)
	case "imap":
		r, err = auditIMAP(ctx, &o)
	case "pop3":
		r, err = auditPOP3(ctx, &o)
	default:
		return nil, fmt.Errorf("%w: unknown protocol %q: want smtp, imap or pop3", ErrUsage, protocol)
	}
	if r == nil && err != nil {
		// Still one document for scripts: what was asked and what failed.
		r = newReport(o.Target, protocol)
		r.errorf("%v", err)
	}
	r.sortFindings()
	return r, err
}

// smtpSession is an SMTP client connection that has been greeted.
type smtpSession struct {
	*conn
	greeting reply
	ehlo     reply
	ext      map[string]string // EHLO keyword -> parameters
}

func (s *smtpSession) has(ext string) bool { _, ok := s.ext[ext]; return ok }

// parseEHLO fills ext from an EHLO reply.
func (s *smtpSession) parseEHLO(r reply) []string {
	s.ehlo = r
	s.ext = map[string]string{}
	var names []string
	for _, l := range r.lines[1:] {
		if len(l) < 4 {
			continue
		}
		kw, params, _ := strings.Cut(strings.TrimSpace(l[4:]), " ")
		kw = strings.ToUpper(kw)
		s.ext[kw] = params
		names = append(names, strings.TrimSpace(strings.ToUpper(kw)+" "+params))
	}
	return names
}

// helo returns the EHLO argument: the given name or our address literal.
func (o *Options) helo(c *conn) string {
	if o.HeloName != "" {
		return o.HeloName
	}
	if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		if a.IP.To4() != nil {
			return "[" + a.IP.String() + "]"
		}
		return "[IPv6:" + a.IP.String() + "]"
	}
	return "postern-audit.invalid"
}

// openSMTP connects, reads the greeting and says EHLO (HELO if EHLO is
// refused); with useTLS it then upgrades with STARTTLS and says EHLO again.
func openSMTP(ctx context.Context, o *Options, useTLS bool) (*smtpSession, error) {
	implicit := o.TLS || o.port() == "465"
	c, err := dial(ctx, o, implicit)
	if err != nil {
		return nil, err
	}
	s := &smtpSession{conn: c}
	fail := func(err error) (*smtpSession, error) { c.Close(); return nil, err }
	if s.greeting, err = c.readReply(); err != nil {
		return fail(fmt.Errorf("reading greeting: %w", err))
	}
	if s.greeting.code != 220 {
		return fail(&replyError{"greeting", s.greeting})
	}
	if err := s.hello(o); err != nil {
		return fail(err)
	}
	if useTLS && !c.isTLS && s.has("STARTTLS") {
		r, err := c.cmd("STARTTLS")
		if err != nil {
			return fail(err)
		}
		if r.code != 220 {
			return fail(&replyError{"STARTTLS", r})
		}
		if err := c.startTLS(o.tlsConfig()); err != nil {
			return fail(err)
		}
		if err := s.hello(o); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

func (s *smtpSession) hello(o *Options) error {
	r, err := s.cmd("EHLO " + o.helo(s.conn))
	if err != nil {
		return err
	}
	if r.code != 250 {
		r2, err := s.cmd("HELO " + o.helo(s.conn))
		if err != nil {
			return err
		}
		if r2.code != 250 {
			return &replyError{"HELO", r2}
		}
		r = r2
	}
	s.parseEHLO(r)
	return nil
}

func (s *smtpSession) quit() {
	s.cmd("QUIT")
	s.Close()
}

// replyError is an unexpected reply that stops an exchange.
type replyError struct {
	what string
	r    reply
}

func (e *replyError) Error() string { return e.what + ": " + e.r.text() }

// auditSMTP runs every SMTP check.
func auditSMTP(ctx context.Context, o *Options) (*Report, error) {
	r := newReport(o.Target, "smtp")
	implicit := o.TLS || o.port() == "465"
	c, err := dial(ctx, o, implicit)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", o.Target, err)
	}
	defer c.Close()
	s := &smtpSession{conn: c}
	if implicit {
		r.TLS.Offered, r.TLS.Implicit = true, true
		st, _ := c.tlsState()
		fillTLS(r, st, o.Now())
	}
	if s.greeting, err = c.readReply(); err != nil {
		return nil, greetingError(o, implicit, err)
	}
	r.Banner = s.greeting.text()
	r.Hostname = hostnameFromGreeting(s.greeting.first())
	if s.greeting.code != 220 {
		return r, fmt.Errorf("%s refuses the session: %s", o.Target, s.greeting.text())
	}
	bannerLeak(r, "banner", s.greeting.text())

	if err := s.hello(o); err != nil {
		return r, fmt.Errorf("%s: EHLO: %w", o.Target, err)
	}
	r.Extensions = s.parseEHLO(s.ehlo)
	if r.Software == "" || r.Version == "" {
		bannerLeak(r, "ehlo", s.ehlo.first())
	}
	mechs := strings.Fields(strings.ToUpper(s.ext["AUTH"]))
	if mechs == nil {
		mechs = []string{}
	}
	if c.isTLS {
		r.AuthAfterTLS = mechs
	} else {
		r.AuthBeforeTLS = mechs
		authBeforeTLS(r, "EHLO "+o.helo(c), s.ehlo, mechs)
	}

	if !c.isTLS {
		if s.has("STARTTLS") {
			r.TLS.Offered = true
			s.startTLS(ctx, o, r)
		} else {
			r.add(Finding{ID: "starttls-missing", Severity: Medium,
				Title:    "STARTTLS is not offered: mail to and from this server travels in clear text",
				Evidence: []string{"C: EHLO " + o.helo(c), "S: " + s.ehlo.text()},
				Fix:      "Configure a certificate and offer STARTTLS (Postfix: smtpd_tls_cert_file, smtpd_tls_security_level = may)."})
		}
	}

	if implicit {
		checkOldTLS(ctx, o, r, nil)
	} else if r.TLS.Version != "" {
		checkOldTLS(ctx, o, r, smtpPreamble(o))
	}

	// VRFY and EXPN behaviour, judged against a name that cannot exist.
	if s.conn != nil {
		domain := o.Domain
		if domain == "" {
			domain = r.Hostname
		}
		r.VRFY = probeVerb(s, o, r, "VRFY", domain)
		r.EXPN = probeVerb(s, o, r, "EXPN", domain)
		r.Users.Methods["vrfy"], r.Users.Methods["expn"] = r.VRFY, r.EXPN
		s.quit()
	}

	// Enumeration last: it is what makes servers throttle or block us.
	if ctx.Err() == nil && !o.NoRelay {
		checkRelay(ctx, o, r)
	}
	if ctx.Err() == nil && o.Smuggling {
		checkSmuggling(ctx, o, r)
	}
	if ctx.Err() == nil && len(o.Users) > 0 {
		enumerate(ctx, o, r)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.errorf("the audit's deadline (%s) passed before every check ran", o.Deadline)
	} else if ctx.Err() != nil {
		r.errorf("interrupted before every check ran")
	}
	return r, nil
}

// authBeforeTLS adds a finding when AUTH is offered on a clear-text
// connection.
func authBeforeTLS(r *Report, sent string, got reply, mechs []string) {
	if len(mechs) == 0 {
		return
	}
	sev, what := Medium, "challenge-response"
	for _, m := range mechs {
		if m == "PLAIN" || m == "LOGIN" {
			sev, what = High, "clear-text password"
		}
	}
	r.add(Finding{ID: "auth-before-tls", Severity: sev,
		Title:    "AUTH (" + strings.Join(mechs, " ") + ") is offered before TLS: " + what + " logins can be sniffed or brute-forced in clear text",
		Evidence: []string{"C: " + sent, "S: " + got.text()},
		Fix:      "Offer AUTH only after STARTTLS (Postfix: smtpd_tls_auth_only = yes), and not at all on port 25."})
}

// startTLS checks STARTTLS injection on a fresh connection, then upgrades
// the main connection and records what TLS gave.
func (s *smtpSession) startTLS(ctx context.Context, o *Options, r *Report) {
	checkSMTPInjection(ctx, o, r)
	tr, err := s.cmd("STARTTLS")
	if err != nil {
		r.TLS.Error = err.Error()
		return
	}
	if tr.code != 220 {
		r.TLS.Error = tr.text()
		return
	}
	if err := s.conn.startTLS(o.tlsConfig()); err != nil {
		r.TLS.Error = err.Error()
		r.add(Finding{ID: "starttls-broken", Severity: Medium,
			Title:    "STARTTLS is offered but the TLS handshake fails",
			Evidence: []string{"C: STARTTLS", "S: " + tr.text(), err.Error()},
			Fix:      "Check the certificate and the TLS settings; senders fall back to clear text."})
		s.conn = nil
		return
	}
	st, _ := s.tlsState()
	fillTLS(r, st, o.Now())
	er, err := s.cmd("EHLO " + o.helo(s.conn))
	if err != nil || er.code != 250 {
		return
	}
	r.ExtensionsAfterTLS = s.parseEHLO(er)
	r.AuthAfterTLS = strings.Fields(strings.ToUpper(s.ext["AUTH"]))
	if r.AuthAfterTLS == nil {
		r.AuthAfterTLS = []string{}
	}
}

// checkSMTPInjection sends STARTTLS and RSET in one segment (CVE-2011-0411)
// and reports the server if it answers the RSET inside TLS.
func checkSMTPInjection(ctx context.Context, o *Options, r *Report) {
	s, err := openSMTP(ctx, o, false)
	if err != nil {
		return
	}
	defer s.Close()
	if err := s.writeRaw([]byte("STARTTLS\r\nRSET\r\n")); err != nil {
		return
	}
	tr, err := s.readReply()
	if err != nil || tr.code != 220 {
		return
	}
	if err := s.conn.startTLS(o.tlsConfig()); err != nil {
		return // plaintext answered or connection closed: not injectable
	}
	if line, ok := s.pending(o.Settle); ok {
		r.add(Finding{ID: "starttls-injection", Severity: High,
			Title: "STARTTLS command injection: commands sent in clear text before TLS are executed inside TLS (CVE-2011-0411)",
			Evidence: []string{`C: STARTTLS\r\nRSET\r\n (one segment)`, "S: " + tr.text(), "(TLS handshake)",
				"S: " + line + "   <- the clear-text RSET answered inside TLS"},
			Fix: "Discard any input buffered before the TLS handshake (upgrade the server software)."})
	}
	s.cmd("QUIT")
}

// probeVerb says how VRFY or EXPN treats a name that cannot exist and
// postmaster, which must (RFC 5321 4.5.1), and adds a finding when the
// verb tells users apart.
func probeVerb(s *smtpSession, o *Options, r *Report, verb, domain string) string {
	fake := o.randomLocal()
	if domain != "" {
		fake += "@" + domain
	}
	fr, err := s.cmd(verb + " " + fake)
	if err != nil {
		return "no answer: " + err.Error()
	}
	pr, err := s.cmd(verb + " postmaster")
	if err != nil {
		return "no answer: " + err.Error()
	}
	ev := []string{"C: " + verb + " " + fake, "S: " + fr.text(), "C: " + verb + " postmaster", "S: " + pr.text()}
	switch {
	case fr.code == 500 || fr.code == 502 || fr.code == 504:
		return "disabled"
	case fr.code == 252 && pr.code == 252:
		return "non-committal"
	case fr.code == 250 || fr.code == 251:
		return "accepts any name"
	case fr.transient():
		return "temporary failure"
	case fr.code == 252:
		return "non-committal"
	case fr.permanent() && (pr.positive() || userUnknown(fr)):
		sev := Medium
		id := strings.ToLower(verb) + "-enabled"
		title := verb + " reveals whether a user exists: it answers unknown names and real ones differently"
		if verb == "EXPN" {
			title = "EXPN reveals users and the members of mailing lists and aliases"
		}
		r.add(Finding{ID: id, Severity: sev, Title: title, Evidence: ev,
			Fix: "Disable " + verb + " or answer 252 for every name (Postfix: disable_vrfy_command = yes; Exim: remove acl_smtp_vrfy/acl_smtp_expn)."})
		return "reveals users"
	case fr.permanent():
		return "refused"
	}
	return "unclear"
}

// userUnknown reports whether a refusal says the user does not exist
// (5.1.x, "unknown") rather than refusing on policy (5.7.x, relay).
func userUnknown(r reply) bool {
	t := strings.ToLower(r.text())
	if strings.Contains(t, " 5.7.") || strings.Contains(t, "relay") {
		return false
	}
	return strings.Contains(t, " 5.1.") || strings.Contains(t, "unknown") || strings.Contains(t, "no such") ||
		strings.Contains(t, "not found") || r.code == 550 || r.code == 551 || r.code == 553
}
