package courier

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// conn is an SMTP client connection that has greeted, said EHLO (again after
// STARTTLS) and, for a smarthost, authenticated.
type conn struct {
	c         *smtp.Client
	nc        net.Conn // what c talks over (TCP or TLS)
	key       string   // pool key
	host      string
	tls       string
	verified  bool
	tr        *transcript // nil unless debug logging is on
	reused    bool        // taken from the pool for this delivery
	idleSince time.Time   // when it was put in the pool
}

// probeIdleAfter is how long a pooled connection may be idle before it is
// checked with RSET when taken. A connection reused sooner goes straight to
// MAIL, saving RSET and the EHLO that go-smtp sends after it: two of six
// round trips per message.
var probeIdleAfter = 2 * time.Second

func (cn *conn) close() { cn.c.Close() }

// connect returns a ready connection to addr (host's address): an idle one
// from the pool if it still answers RSET, else a new one. On failure the
// reply says why.
func (c *Courier) connect(ctx context.Context, host, addr string, pooled bool) (*conn, reply) {
	key := addr
	if c.cfg.RelayHost != "" {
		key = "relay " + addr
	}
	for pooled {
		cn := c.pool.get(key)
		if cn == nil {
			break
		}
		if time.Since(cn.idleSince) < probeIdleAfter {
			// Just back from a finished transaction: use it as it is.
			// If it died meanwhile, MAIL fails and transact reports it
			// stale, and a new connection is made for the message.
			connectionsReused.Inc()
			cn.reused = true
			return cn, reply{}
		}
		// Idle a while: RSET tells whether it still works (go-smtp then
		// says EHLO again).
		cn.nc.SetDeadline(time.Now().Add(c.cfg.CommandTimeout))
		err := cn.c.Reset()
		cn.nc.SetDeadline(time.Time{})
		if err == nil {
			connectionsReused.Inc()
			cn.reused = true
			return cn, reply{}
		}
		cn.close()
	}
	cn, r, tlsFailed := c.dial(ctx, host, addr, true)
	if tlsFailed {
		// Opportunistic TLS: like Postfix, deliver in plaintext when the
		// TLS handshake (or what follows it) fails.
		c.log.Info("courier: TLS failed, retrying in plaintext", "host", host, "addr", addr, "reason", r.text)
		tlsFallbacks.Inc()
		cn, r, _ = c.dial(ctx, host, addr, false)
	}
	if cn == nil {
		connectFailures.Inc()
		return nil, r
	}
	if cn.tls != "" {
		connectionsTotal.WithLabelValues("yes").Inc()
	} else {
		connectionsTotal.WithLabelValues("no").Inc()
	}
	cn.key = key
	if c.cfg.RelayHost != "" && c.cfg.RelayUser != "" {
		if cn.tls == "" {
			cn.close()
			return nil, reply{454, "4.7.0", fmt.Sprintf("relay %s: no TLS, not sending credentials", host)}
		}
		cn.nc.SetDeadline(time.Now().Add(c.cfg.CommandTimeout))
		err := cn.c.Auth(sasl.NewPlainClient("", c.cfg.RelayUser, c.cfg.RelayPassword))
		cn.nc.SetDeadline(time.Time{})
		if err != nil {
			cn.close()
			// A wrong password is fixed by the administrator: retry, do not bounce.
			return nil, reply{454, "4.7.0", fmt.Sprintf("authentication to relay %s failed: %v", host, err)}
		}
	}
	return cn, reply{}
}

// dial opens a connection and greets. With tryTLS it uses STARTTLS when
// offered; tlsFailed reports that the TLS step failed and a plaintext
// connection may be tried instead.
func (c *Courier) dial(ctx context.Context, host, addr string, tryTLS bool) (cn *conn, r reply, tlsFailed bool) {
	d := net.Dialer{Timeout: c.cfg.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, reply{451, "4.4.1", fmt.Sprintf("connect to %s[%s]: %s", host, addr, netErrText(err))}, false
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	fail := func(err error, during string) reply {
		raw.Close()
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// RFC 5321 3.1, 5.1: a host that refuses the session (4xx
			// or 5xx at the greeting or EHLO) is skipped, as Postfix's
			// smtp_skip_5xx_greeting does; if it was the last host, its
			// reply stands (a 5xx from every MX bounces).
			return remoteReply(se, host)
		}
		return reply{451, "4.4.2", fmt.Sprintf("%s[%s] %s: %s", host, addr, during, netErrText(err))}
	}

	sc, tr := c.newClient(raw, host)
	tr.note("connected to " + addr)
	if err := sc.Hello(c.cfg.Hostname); err != nil {
		return nil, fail(err, "greeting"), false
	}
	if ok, _ := sc.Extension("STARTTLS"); !ok || !tryTLS {
		return &conn{c: sc, nc: raw, host: host, tr: tr}, reply{}, false
	}

	// STARTTLS by hand (RFC 3207): go-smtp's client cannot do it
	// opportunistically after our own EHLO. Nothing may follow the 220.
	raw.SetDeadline(time.Now().Add(c.cfg.CommandTimeout))
	tr.note("STARTTLS")
	if _, err := io.WriteString(raw, "STARTTLS\r\n"); err != nil {
		return nil, fail(err, "STARTTLS"), false
	}
	br := bufio.NewReader(raw)
	code, msg, err := textproto.NewReader(br).ReadResponse(220)
	tr.note(fmt.Sprintf("%d %s", code, msg))
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			// STARTTLS refused: go on in plaintext on this connection.
			raw.SetDeadline(time.Time{})
			return &conn{c: sc, nc: raw, host: host, tr: tr}, reply{}, false
		}
		return nil, fail(err, "STARTTLS"), true
	}
	if br.Buffered() > 0 {
		raw.Close()
		return nil, reply{451, "4.4.2", fmt.Sprintf("%s[%s]: data after STARTTLS reply", host, addr)}, true
	}
	tc := tls.Client(raw, &tls.Config{
		ServerName:         serverName(host),
		InsecureSkipVerify: true, // opportunistic: encryption without authentication
	})
	hctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		return nil, reply{451, "4.4.2", fmt.Sprintf("%s[%s] TLS handshake: %v", host, addr, err)}, true
	}
	raw.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	// The server sends no new greeting after STARTTLS: give the client the
	// one it waits for, then say EHLO again (RFC 3207 4.2).
	tsc, ttr := c.newClient(&greetedConn{Conn: tc, pending: []byte("220 TLS\r\n")}, host)
	if ttr != nil {
		ttr.skip = 1 // the greeting above is ours
		ttr.note("TLS handshake done: " + tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite))
	}
	if err := tsc.Hello(c.cfg.Hostname); err != nil {
		tc.Close()
		return nil, reply{451, "4.4.2", fmt.Sprintf("%s[%s] EHLO after STARTTLS: %v", host, addr, err)}, true
	}
	return &conn{
		c:        tsc,
		nc:       tc,
		host:     host,
		tls:      tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite),
		verified: c.verify(cs, host),
		tr:       ttr,
	}, reply{}, false
}

func (c *Courier) newClient(nc net.Conn, host string) (*smtp.Client, *transcript) {
	sc := smtp.NewClient(nc)
	sc.CommandTimeout = c.cfg.CommandTimeout
	// RFC 5321 4.5.3.2.6: 10 minutes for the reply to the final dot.
	sc.SubmissionTimeout = 2 * c.cfg.CommandTimeout
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return sc, nil
	}
	tr := &transcript{log: c.log, host: host}
	sc.DebugWriter = tr
	return sc, tr
}

// verify reports whether the peer's certificate is valid for host.
func (c *Courier) verify(cs tls.ConnectionState, host string) bool {
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	opts := x509.VerifyOptions{DNSName: host, Roots: c.cfg.RootCAs, Intermediates: x509.NewCertPool()}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err == nil
}

// serverName is the SNI for host: none for an address literal.
func serverName(host string) string {
	if net.ParseIP(host) != nil {
		return ""
	}
	return host
}

// greetedConn replays a greeting before the connection's own data.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// remoteReply turns the remote's error reply into ours, naming the host.
func remoteReply(se *smtp.SMTPError, host string) reply {
	enh := ""
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		enh = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return reply{se.Code, enh, fmt.Sprintf("%s said: %s", host, se.Message)}
}

// netErrText is the short reason of a network error ("connection refused").
func netErrText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "connection timed out"
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	if errors.Is(err, io.EOF) {
		return "connection closed by remote"
	}
	return err.Error()
}
