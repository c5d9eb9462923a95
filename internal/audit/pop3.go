package audit

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// pop3Cmd sends a command and reads its status line and, for multi-line
// answers, the lines up to the terminating dot.
func pop3Cmd(c *conn, command string, multi bool) (status string, lines []string, err error) {
	if err := c.writeLine(command); err != nil {
		return "", nil, err
	}
	status, err = c.readLine()
	if err != nil || !multi || !strings.HasPrefix(status, "+OK") {
		return status, nil, err
	}
	for i := 0; i < maxReplyLines; i++ {
		l, err := c.readLine()
		if err != nil {
			return status, lines, err
		}
		if l == "." {
			return status, lines, nil
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
	return status, lines, fmt.Errorf("CAPA longer than %d lines", maxReplyLines)
}

var apopStamp = regexp.MustCompile(`<[^<>@\s]+@[^<>\s]+>`)

// pop3Auth lists what can carry a password: USER and SASL mechanisms.
func pop3Auth(caps []string) []string {
	out := []string{}
	for _, c := range caps {
		f := strings.Fields(strings.ToUpper(c))
		switch {
		case len(f) == 1 && f[0] == "USER":
			out = append(out, "USER")
		case len(f) > 1 && f[0] == "SASL":
			out = append(out, f[1:]...)
		}
	}
	return out
}

// auditPOP3 runs the POP3 checks.
func auditPOP3(ctx context.Context, o *Options) (*Report, error) {
	r := newReport(o.Target, "pop3")
	implicit := o.TLS || o.port() == "995"
	c, err := dial(ctx, o, implicit)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", o.Target, err)
	}
	defer c.Close()
	if implicit {
		r.TLS.Offered, r.TLS.Implicit = true, true
		st, _ := c.tlsState()
		fillTLS(r, st, o.Now())
	}
	greeting, err := c.readLine()
	if err != nil {
		return nil, greetingError(o, implicit, err)
	}
	r.Banner = greeting
	if !strings.HasPrefix(greeting, "+OK") {
		return r, fmt.Errorf("%s refuses the session: %s", o.Target, greeting)
	}
	bannerLeak(r, "banner", apopStamp.ReplaceAllString(greeting, ""))

	status, caps, err := pop3Cmd(c, "CAPA", true)
	if err != nil {
		return r, fmt.Errorf("%s: CAPA: %w", o.Target, err)
	}
	capEv := []string{"C: CAPA", "S: " + status}
	for _, l := range caps {
		capEv = append(capEv, "S: "+l)
	}
	if caps == nil {
		caps = []string{}
	}
	r.Extensions = caps
	for _, l := range caps {
		if f := strings.Fields(l); len(f) > 1 && strings.EqualFold(f[0], "IMPLEMENTATION") {
			r.Implementation = strings.Join(f[1:], " ")
			implementationLeak(r, "pop3-implementation", r.Implementation, "C: CAPA", "S: "+l)
		}
	}
	mechs := pop3Auth(caps)
	if c.isTLS {
		r.AuthAfterTLS = mechs
	} else {
		// Ask the server, with a name and no password, whether USER works
		// before TLS even when CAPA does not say.
		if !hasCap(mechs, "USER") {
			if ok, ev := pop3UserAccepted(ctx, o); ok {
				mechs = append(mechs, "USER")
				capEv = append(capEv, ev...)
			}
		}
		r.AuthBeforeTLS = mechs
		plaintextLogin(r, strings.Join(mechs, " "), mechs, capEv,
			"Refuse USER/PASS and SASL PLAIN before STLS (Dovecot: disable_plaintext_auth = yes / auth_allow_cleartext = no).")
		if hasCap(caps, "STLS") {
			r.TLS.Offered = true
			checkLineInjection(ctx, o, r, "pop3")
			st, _, err := pop3Cmd(c, "STLS", false)
			switch {
			case err != nil:
				r.TLS.Error = err.Error()
			case !strings.HasPrefix(st, "+OK"):
				r.TLS.Error = st
			default:
				if err := c.startTLS(o.tlsConfig()); err != nil {
					r.TLS.Error = err.Error()
					tlsBroken(r, "C: STLS", "S: "+st, err)
					return r, nil
				}
				ts, _ := c.tlsState()
				fillTLS(r, ts, o.Now())
				if _, caps2, err := pop3Cmd(c, "CAPA", true); err == nil {
					r.ExtensionsAfterTLS = append(r.ExtensionsAfterTLS, caps2...)
					r.AuthAfterTLS = pop3Auth(caps2)
				}
			}
		} else {
			starttlsMissing(r, "STLS", capEv)
		}
	}
	pop3Cmd(c, "QUIT", false)
	if implicit {
		checkOldTLS(ctx, o, r, nil)
	} else {
		checkOldTLS(ctx, o, r, pop3Preamble)
	}
	return r, nil
}

// pop3UserAccepted opens a separate connection and sends USER with a
// random name (never a password): +OK means USER/PASS works in clear text.
func pop3UserAccepted(ctx context.Context, o *Options) (bool, []string) {
	c, err := dial(ctx, o, false)
	if err != nil {
		return false, nil
	}
	defer c.Close()
	if _, err := c.readLine(); err != nil {
		return false, nil
	}
	name := o.randomLocal()
	st, _, err := pop3Cmd(c, "USER "+name, false)
	if err != nil {
		return false, nil
	}
	pop3Cmd(c, "QUIT", false)
	return strings.HasPrefix(st, "+OK"), []string{"C: USER " + name, "S: " + st}
}
