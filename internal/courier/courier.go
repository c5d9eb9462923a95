// Package courier delivers a queued message to the recipients of one remote
// domain: it finds the domain's mail exchangers (MX by preference, the
// implicit MX when there is none, RFC 5321 5.1; null MX is a permanent
// failure, RFC 7505), or uses a configured smarthost, connects with
// opportunistic STARTTLS, and runs one SMTP transaction for all the domain's
// recipients. Every recipient gets a result: 2xx delivered, 4xx retry later
// (including DNS and connection trouble), 5xx permanent. Connections are kept
// idle for a short while and reused for the next message to the same host.
package courier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern-mail/postern/internal/dnsx"
)

// Defaults for zero Config fields.
const (
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute // RFC 5321 4.5.3.2
	defaultMaxPerDomain   = 5
	defaultMaxIdlePerHost = 16
	idleTimeout           = 30 * time.Second // how long an idle connection is kept
	maxAddresses          = 10               // addresses tried per delivery (Postfix: smtp_mx_address_limit)
)

// Config configures a Courier.
type Config struct {
	Hostname                 string         // EHLO name
	Resolver                 *dnsx.Resolver // nil: the system resolver
	MXPort                   int            // port used on MX hosts (25 when zero)
	RelayHost                string         // "host:port" smarthost; empty: deliver by MX
	RelayUser, RelayPassword string         // optional AUTH PLAIN to the smarthost, only over TLS
	ConnectTimeout           time.Duration  // TCP connect
	CommandTimeout           time.Duration  // each command's reply, and each write of the message
	MaxPerDomain             int            // concurrent connections per destination domain
	// MaxIdlePerHost bounds the idle connections kept per host address for
	// reuse. Many domains may share one MX host (a hosting provider), so
	// it is best as high as the deliveries that run at once.
	MaxIdlePerHost int
	Logger         *slog.Logger
	// RootCAs verify remote certificates (nil: the system's roots). TLS is
	// opportunistic: the result is recorded, never enforced.
	RootCAs *x509.CertPool
}

// Envelope is the SMTP envelope of one delivery.
type Envelope struct {
	From       string   // reverse path; "" for a bounce
	Recipients []string // all in the destination domain
	UTF8       bool     // the message or an address needs SMTPUTF8 (RFC 6531)
	Size       int64    // message size in bytes, for SIZE= (RFC 1870); 0: unknown

	// DSN parameters (RFC 3461), passed on when the remote offers DSN.
	Ret   string    // RET: "FULL" or "HDRS"; "" for none
	EnvID string    // ENVID
	DSN   []RcptDSN // per recipient, parallel to Recipients; may be nil
}

// RcptDSN holds one recipient's DSN parameters (RFC 3461 4.1, 4.2).
type RcptDSN struct {
	Notify string // "NEVER" or a comma list of SUCCESS, FAILURE, DELAY; "" for none
	ORcpt  string // "rfc822;user@example.org" (or "utf-8;..."); "" for none
}

// RcptResult is the outcome for one recipient. Code 250 means delivered;
// other 2xx too. Enhanced is the RFC 3463 status ("5.1.1"), "X.0.0" when the
// remote gave none.
type RcptResult struct {
	Recipient string
	Code      int
	Enhanced  string
	Text      string
}

// Attempt is what one call of Deliver did.
type Attempt struct {
	Domain   string
	Host     string // the MX host (or relay) last talked to or tried
	IP       string // its address
	TLS      string // "TLS 1.3 TLS_AES_128_GCM_SHA256"; "" in plaintext
	Verified bool   // the TLS certificate verified for Host (opportunistic TLS delivers either way)
	// DSN reports that the remote offered the DSN extension, so it took over
	// the delivery notifications asked for (RFC 3461 4.1): without it, a
	// NOTIFY=SUCCESS recipient should get a "relayed" DSN from us.
	DSN     bool
	Results []RcptResult // one per recipient, in Envelope order
}

// Courier delivers messages to remote hosts. It is safe for concurrent use.
type Courier struct {
	cfg  Config
	log  *slog.Logger
	res  *dnsx.Resolver
	pool *pool

	mu   sync.Mutex
	sems map[string]*domainSem
}

type domainSem struct {
	ch    chan struct{}
	users int
}

// New returns a Courier.
func New(cfg Config) *Courier {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MXPort == 0 {
		cfg.MXPort = 25
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = defaultCommandTimeout
	}
	if cfg.MaxPerDomain <= 0 {
		cfg.MaxPerDomain = defaultMaxPerDomain
	}
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = defaultMaxIdlePerHost
	}
	c := &Courier{cfg: cfg, log: cfg.Logger, res: cfg.Resolver, sems: map[string]*domainSem{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.res == nil {
		c.res = dnsx.New("", 0)
	}
	c.pool = newPool(idleTimeout, cfg.MaxIdlePerHost)
	return c
}

// Close closes the idle pooled connections (with QUIT).
func (c *Courier) Close() {
	c.pool.close()
}

// Deliver delivers the message that open returns to env.Recipients, all in
// domain, in one transaction. open may be called more than once (a retry on
// another host); each reader is closed. The Attempt has one result per
// recipient.
func (c *Courier) Deliver(ctx context.Context, domain string, env Envelope, open func() (io.ReadCloser, error)) Attempt {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	att := Attempt{Domain: domain}
	if len(env.Recipients) == 0 {
		return att
	}
	release, err := c.acquire(ctx, domain)
	if err != nil {
		att.Results = all(env, reply{451, "4.4.2", "delivery interrupted: " + err.Error()})
		return att
	}
	defer release()

	att = c.deliver(ctx, domain, env, open)
	c.logAttempt(env, att)
	return att
}

// deliver routes and runs the transaction.
func (c *Courier) deliver(ctx context.Context, domain string, env Envelope, open func() (io.ReadCloser, error)) Attempt {
	att := Attempt{Domain: domain}
	hosts, port, fail := c.route(ctx, domain)
	if fail != nil {
		att.Results = all(env, *fail)
		return att
	}
	last := reply{451, "4.4.1", "no mail exchanger could be reached"}
	tries := 0
	for _, host := range hosts {
		if tries >= maxAddresses {
			break
		}
		att.Host = host
		ips, err := c.res.LookupIP(ctx, host)
		if err != nil {
			last = dnsReply(host, err)
			if errors.Is(err, dnsx.ErrNotFound) {
				// An MX pointing nowhere is a DNS misconfiguration: retry later.
				last = reply{451, "4.4.4", fmt.Sprintf("mail exchanger %s has no address", host)}
			}
			continue
		}
		for _, ip := range ips {
			if tries++; tries > maxAddresses {
				break
			}
			att.IP = ip.String()
			addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
			cn, r := c.connect(ctx, host, addr, true)
			if cn == nil {
				last = r
				continue
			}
			res, reusable, stale := c.transact(ctx, cn, env, open)
			if stale {
				// The idle connection died between RSET and MAIL: the
				// remote saw no transaction, so a new connection is safe.
				cn.close()
				if cn, r = c.connect(ctx, host, addr, false); cn == nil {
					last = r
					continue
				}
				res, reusable, _ = c.transact(ctx, cn, env, open)
			}
			att.TLS, att.Verified = cn.tls, cn.verified
			att.DSN, _ = cn.c.Extension("DSN")
			att.Results = res
			if reusable && ctx.Err() == nil {
				c.pool.put(cn)
			} else {
				cn.close()
			}
			return att
		}
	}
	att.Results = all(env, last)
	return att
}

// route returns the hosts to try, in order, and the port, or a reply for
// every recipient when the domain cannot receive mail now or ever.
func (c *Courier) route(ctx context.Context, domain string) ([]string, int, *reply) {
	if c.cfg.RelayHost != "" {
		host, p, err := net.SplitHostPort(c.cfg.RelayHost)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			return nil, 0, &reply{451, "4.3.5", fmt.Sprintf("bad relay host %q", c.cfg.RelayHost)}
		}
		return []string{host}, port, nil
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		// RFC 5321 4.1.3: an address literal, user@[192.0.2.1] or
		// user@[IPv6:2001:db8::1], names the host itself.
		lit := strings.TrimPrefix(domain[1:len(domain)-1], "ipv6:")
		if ip := net.ParseIP(lit); ip != nil {
			return []string{ip.String()}, c.cfg.MXPort, nil
		}
		return nil, 0, &reply{550, "5.1.2", fmt.Sprintf("bad address literal %s", domain)}
	}
	mxs, err := c.res.LookupMX(ctx, domain)
	switch {
	case errors.Is(err, dnsx.ErrNullMX):
		// RFC 7505 4.1.
		return nil, 0, &reply{556, "5.1.10", fmt.Sprintf("domain %s does not accept mail (null MX)", domain)}
	case err != nil && !errors.Is(err, dnsx.ErrNotFound):
		r := dnsReply(domain, err)
		return nil, 0, &r
	}
	if len(mxs) == 0 {
		// RFC 5321 5.1: no MX, the domain itself is the implicit MX; the
		// system resolver reports a domain without MX as not found too, so
		// the address lookup decides whether the domain exists.
		if _, err := c.res.LookupIP(ctx, domain); err != nil {
			r := dnsReply(domain, err)
			return nil, 0, &r
		}
		return []string{domain}, c.cfg.MXPort, nil
	}
	hosts := make([]string, len(mxs))
	for i, m := range mxs {
		hosts[i] = m.Host
	}
	return hosts, c.cfg.MXPort, nil
}

// acquire takes one of the domain's connection slots.
func (c *Courier) acquire(ctx context.Context, domain string) (func(), error) {
	c.mu.Lock()
	s := c.sems[domain]
	if s == nil {
		s = &domainSem{ch: make(chan struct{}, c.cfg.MaxPerDomain)}
		c.sems[domain] = s
	}
	s.users++
	c.mu.Unlock()
	done := func() {
		c.mu.Lock()
		if s.users--; s.users == 0 {
			delete(c.sems, domain)
		}
		c.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// reply is an SMTP reply, ours or the remote's.
type reply struct {
	code     int
	enhanced string
	text     string
}

func all(env Envelope, r reply) []RcptResult {
	out := make([]RcptResult, len(env.Recipients))
	for i, rcpt := range env.Recipients {
		out[i] = r.result(rcpt)
	}
	return out
}

func (r reply) result(rcpt string) RcptResult {
	enh := r.enhanced
	if enh == "" {
		enh = fmt.Sprintf("%d.0.0", r.code/100)
	}
	return RcptResult{Recipient: rcpt, Code: r.code, Enhanced: enh, Text: r.text}
}

// dnsReply turns a DNS failure into a reply.
func dnsReply(name string, err error) reply {
	switch {
	case errors.Is(err, dnsx.ErrNullMX):
		return reply{556, "5.1.10", fmt.Sprintf("domain %s does not accept mail (null MX)", name)}
	case errors.Is(err, dnsx.ErrNotFound):
		return reply{550, "5.1.2", fmt.Sprintf("no such domain: %s", name)}
	}
	return reply{451, "4.4.3", fmt.Sprintf("DNS lookup failed: %v", err)}
}

func (c *Courier) logAttempt(env Envelope, att Attempt) {
	for _, r := range att.Results {
		status := "deferred"
		switch {
		case r.Code >= 200 && r.Code < 300:
			status = "sent"
		case r.Code >= 500:
			status = "bounced"
		}
		c.log.Info("delivery", "from", env.From, "to", r.Recipient, "domain", att.Domain,
			"host", att.Host, "ip", att.IP, "tls", att.TLS, "status", status,
			"reply", fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text))
	}
}
