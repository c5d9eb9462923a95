package audit

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// imapSession is an IMAP client connection with tagged commands.
type imapSession struct {
	*conn
	n int
}

// imapResult is the untagged lines and the tagged completion of a command.
type imapResult struct {
	untagged []string
	status   string // the tagged line
}

func (r imapResult) ok() bool {
	f := strings.Fields(r.status)
	return len(f) > 1 && strings.EqualFold(f[1], "OK")
}

// cmd sends a tagged command and reads until its completion.
func (s *imapSession) cmd(command string) (string, imapResult, error) {
	s.n++
	tag := fmt.Sprintf("a%d", s.n)
	line := tag + " " + command
	if err := s.writeLine(line); err != nil {
		return line, imapResult{}, err
	}
	res, err := s.readUntil(tag)
	return line, res, err
}

// readUntil reads untagged lines until the completion tagged tag.
func (s *imapSession) readUntil(tag string) (imapResult, error) {
	var res imapResult
	for i := 0; i < maxReplyLines; i++ {
		l, err := s.readLine()
		if err != nil {
			return res, err
		}
		if strings.HasPrefix(l, tag+" ") {
			res.status = l
			return res, nil
		}
		res.untagged = append(res.untagged, l)
	}
	return res, fmt.Errorf("no completion for %s after %d lines", tag, maxReplyLines)
}

var hasVersion = regexp.MustCompile(`\d+\.\d+`)

var idString = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"|NIL`)

// idSummary turns an ID response's field list into "name version ..." so
// that it can be fingerprinted (RFC 2971).
func idSummary(list string) string {
	m := idString.FindAllStringSubmatch(list, 60)
	fields := map[string]string{}
	for i := 0; i+1 < len(m); i += 2 {
		fields[strings.ToLower(m[i][1])] = m[i+1][1]
	}
	var parts []string
	for _, k := range []string{"name", "version", "vendor", "os", "os-version"} {
		if v := fields[k]; v != "" {
			parts = append(parts, v)
		}
	}
	if len(parts) == 0 {
		return list
	}
	return strings.Join(parts, " ")
}

var capCode = regexp.MustCompile(`(?i)\[CAPABILITY ([^\]]*)\]`)

// imapCaps extracts capabilities from CAPABILITY responses or a greeting.
func imapCaps(lines []string) []string {
	for _, l := range lines {
		if m := capCode.FindStringSubmatch(l); m != nil {
			return strings.Fields(m[1])
		}
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "*" && strings.EqualFold(f[1], "CAPABILITY") {
			return f[2:]
		}
	}
	return nil
}

func hasCap(caps []string, c string) bool {
	for _, x := range caps {
		if strings.EqualFold(x, c) {
			return true
		}
	}
	return false
}

// authMechs lists AUTH=X capabilities, plus LOGIN when not disabled.
func imapAuth(caps []string) []string {
	out := []string{}
	for _, c := range caps {
		if len(c) > 5 && strings.EqualFold(c[:5], "AUTH=") {
			out = append(out, strings.ToUpper(c[5:]))
		}
	}
	if !hasCap(caps, "LOGINDISABLED") {
		out = append(out, "LOGIN-COMMAND")
	}
	return out
}

// auditIMAP runs the IMAP checks.
func auditIMAP(ctx context.Context, o *Options) (*Report, error) {
	r := newReport(o.Target, "imap")
	implicit := o.TLS || o.port() == "993"
	c, err := dial(ctx, o, implicit)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", o.Target, err)
	}
	s := &imapSession{conn: c}
	defer s.Close()
	if implicit {
		r.TLS.Offered, r.TLS.Implicit = true, true
		st, _ := c.tlsState()
		fillTLS(r, st, o.Now())
	}
	greeting, err := s.readLine()
	if err != nil {
		return nil, greetingError(o, implicit, err)
	}
	r.Banner = greeting
	if !strings.HasPrefix(greeting, "* OK") && !strings.HasPrefix(greeting, "* PREAUTH") {
		return r, fmt.Errorf("%s refuses the session: %s", o.Target, greeting)
	}
	bannerLeak(r, "banner", capCode.ReplaceAllString(greeting, ""))

	sent, res, err := s.cmd("CAPABILITY")
	if err != nil {
		return r, fmt.Errorf("%s: CAPABILITY: %w", o.Target, err)
	}
	caps := imapCaps(res.untagged)
	if caps == nil {
		caps = imapCaps([]string{greeting})
	}
	r.Extensions = append([]string{}, caps...)
	capEv := []string{"C: " + sent}
	for _, l := range append(res.untagged, res.status) {
		capEv = append(capEv, "S: "+l)
	}
	mechs := imapAuth(caps)
	if c.isTLS {
		r.AuthAfterTLS = mechs
	} else {
		r.AuthBeforeTLS = mechs
		plaintextLogin(r, "LOGIN command or AUTH="+strings.Join(mechs, " AUTH="), mechs, capEv,
			"Advertise LOGINDISABLED and no AUTH=PLAIN before STARTTLS (Dovecot: disable_plaintext_auth = yes / auth_allow_cleartext = no).")
	}

	if hasCap(caps, "ID") {
		sent, res, err := s.cmd(`ID ("name" "postern-audit")`)
		if err == nil {
			for _, l := range res.untagged {
				if strings.HasPrefix(strings.ToUpper(l), "* ID ") {
					r.Implementation = strings.TrimSpace(l[5:])
					implementationLeak(r, "imap-id", idSummary(r.Implementation), "C: "+sent, "S: "+l)
				}
			}
		}
	}

	if !c.isTLS {
		if hasCap(caps, "STARTTLS") {
			r.TLS.Offered = true
			checkLineInjection(ctx, o, r, "imap")
			sent, res, err := s.cmd("STARTTLS")
			switch {
			case err != nil:
				r.TLS.Error = err.Error()
			case !res.ok():
				r.TLS.Error = res.status
			default:
				if err := s.startTLS(o.tlsConfig()); err != nil {
					r.TLS.Error = err.Error()
					tlsBroken(r, "C: "+sent, "S: "+res.status, err)
					return r, nil
				}
				st, _ := s.tlsState()
				fillTLS(r, st, o.Now())
				if _, res, err := s.cmd("CAPABILITY"); err == nil {
					caps := imapCaps(res.untagged)
					r.ExtensionsAfterTLS = append(r.ExtensionsAfterTLS, caps...)
					r.AuthAfterTLS = imapAuth(caps)
				}
			}
		} else {
			starttlsMissing(r, "STARTTLS", capEv)
		}
	}
	s.cmd("LOGOUT")
	if implicit {
		checkOldTLS(ctx, o, r, nil)
	} else {
		checkOldTLS(ctx, o, r, imapPreamble)
	}
	return r, nil
}

// plaintextLogin adds a finding when a password can be sent before TLS.
func plaintextLogin(r *Report, what string, mechs []string, ev []string, fix string) {
	if len(mechs) == 0 {
		return
	}
	r.add(Finding{ID: "plaintext-login-before-tls", Severity: High,
		Title:    "Passwords can be sent in clear text before TLS (" + what + ")",
		Evidence: ev, Fix: fix})
}

func starttlsMissing(r *Report, verb string, ev []string) {
	r.add(Finding{ID: "starttls-missing", Severity: High,
		Title:    verb + " is not offered and the connection is not TLS: logins and mail travel in clear text",
		Evidence: ev,
		Fix:      "Offer " + verb + " (and implicit TLS on its own port) with a valid certificate."})
}

func tlsBroken(r *Report, sent, got string, err error) {
	r.add(Finding{ID: "starttls-broken", Severity: Medium,
		Title:    "STARTTLS is offered but the TLS handshake fails",
		Evidence: []string{sent, got, err.Error()},
		Fix:      "Check the certificate and TLS settings."})
}

// implementationLeak adds a finding when an ID or IMPLEMENTATION answer
// names the software.
func implementationLeak(r *Report, id, summary string, ev ...string) {
	name, version, explicit := fingerprint(summary)
	if name == "" || !explicit {
		if r.Implementation == "" || r.Implementation == "NIL" {
			return
		}
	}
	if name != "" && (r.Software == "" || (r.Version == "" && version != "")) {
		r.Software, r.Version = name, version
	}
	sev := Low
	title := "The server describes its software when asked: " + r.Implementation
	if version != "" || hasVersion.MatchString(r.Implementation) {
		sev = Medium
	}
	r.add(Finding{ID: id + "-leak", Severity: sev, Title: title, Evidence: ev,
		Fix: "Stop announcing the software name and version (Dovecot: imap_id_send = ; POP3: drop the IMPLEMENTATION capability)."})
}

// checkLineInjection sends STARTTLS (or STLS) and a second command in one
// segment on a fresh connection, and reports the server if it answers the
// second command inside TLS ("NO STARTTLS", CVE-2011-0411 class).
func checkLineInjection(ctx context.Context, o *Options, r *Report, proto string) {
	c, err := dial(ctx, o, false)
	if err != nil {
		return
	}
	defer c.Close()
	if _, err := c.readLine(); err != nil {
		return
	}
	payload, shown := "a STARTTLS\r\nb CAPABILITY\r\n", `C: a STARTTLS\r\nb CAPABILITY\r\n (one segment)`
	if proto == "pop3" {
		payload, shown = "STLS\r\nCAPA\r\n", `C: STLS\r\nCAPA\r\n (one segment)`
	}
	if err := c.writeRaw([]byte(payload)); err != nil {
		return
	}
	first, err := c.readLine()
	if err != nil {
		return
	}
	if proto == "imap" {
		for i := 0; i < 20 && !strings.HasPrefix(first, "a "); i++ {
			if first, err = c.readLine(); err != nil {
				return
			}
		}
		if !strings.HasPrefix(strings.ToUpper(first), "A OK") {
			return
		}
	} else if !strings.HasPrefix(first, "+OK") {
		return
	}
	if err := c.startTLS(o.tlsConfig()); err != nil {
		return // the injected command was answered in clear text or dropped with the connection
	}
	if line, ok := c.pending(o.Settle); ok {
		r.add(Finding{ID: "starttls-injection", Severity: High,
			Title:    "STARTTLS command injection: a command sent in clear text before TLS is answered inside TLS",
			Evidence: []string{shown, "S: " + first, "(TLS handshake)", "S: " + line + "   <- the clear-text command answered inside TLS"},
			Fix:      "Discard any input buffered before the TLS handshake (upgrade the server software)."})
	}
}
