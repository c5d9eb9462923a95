package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
)

// checkOldTLS reports a server that still completes a handshake capped at
// TLS 1.1 (RFC 8996 deprecates 1.0 and 1.1). A client that offers 1.3
// only ever sees the newest version; this asks for an old one on a fresh
// connection. preamble brings a clear-text connection to the point where
// the TLS handshake starts (nil for implicit TLS).
func checkOldTLS(ctx context.Context, o *Options, r *Report, preamble func(c *conn) error) {
	if r.TLS.Version == "" || r.TLS.Version == "TLS1.0" || r.TLS.Version == "TLS1.1" {
		return // no TLS, or already reported as tls-old-version
	}
	c, err := dial(ctx, o, false)
	if err != nil {
		return
	}
	defer c.Close()
	if preamble != nil {
		if err := preamble(c); err != nil {
			return
		}
	}
	cfg := o.tlsConfig()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := c.startTLS(cfg); err != nil {
		return
	}
	st, _ := c.tlsState()
	v := tlsVersionName(st.Version)
	r.add(Finding{ID: "tls-old-version-accepted", Severity: Medium,
		Title:    "The server still accepts " + v + " from clients that ask for it (deprecated by RFC 8996)",
		Evidence: []string{"client offering at most TLS1.1: negotiated " + v + " " + tls.CipherSuiteName(st.CipherSuite)},
		Fix:      "Set the minimum protocol to TLS 1.2 (Postfix: smtpd_tls_protocols = >=TLSv1.2; Dovecot: ssl_min_protocol = TLSv1.2)."})
}

var errNoTLS = errors.New("TLS not started")

// smtpPreamble reads the greeting, says EHLO and STARTTLS.
func smtpPreamble(o *Options) func(c *conn) error {
	return func(c *conn) error {
		if g, err := c.readReply(); err != nil || g.code != 220 {
			return errNoTLS
		}
		if e, err := c.cmd("EHLO " + o.helo(c)); err != nil || e.code != 250 {
			return errNoTLS
		}
		if s, err := c.cmd("STARTTLS"); err != nil || s.code != 220 {
			return errNoTLS
		}
		return nil
	}
}

// imapPreamble reads the greeting and says STARTTLS.
func imapPreamble(c *conn) error {
	if _, err := c.readLine(); err != nil {
		return err
	}
	if err := c.writeLine("a STARTTLS"); err != nil {
		return err
	}
	for i := 0; i < 20; i++ {
		l, err := c.readLine()
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "a ") {
			if strings.HasPrefix(strings.ToUpper(l), "A OK") {
				return nil
			}
			return errNoTLS
		}
	}
	return errNoTLS
}

// pop3Preamble reads the greeting and says STLS.
func pop3Preamble(c *conn) error {
	if _, err := c.readLine(); err != nil {
		return err
	}
	if st, _, err := pop3Cmd(c, "STLS", false); err != nil || !strings.HasPrefix(st, "+OK") {
		return errNoTLS
	}
	return nil
}
