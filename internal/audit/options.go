package audit

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Options say what to audit and how gently.
type Options struct {
	// Target is host:port. Nothing else is ever contacted.
	Target string
	// TLS makes the connection implicit TLS (SMTPS, IMAPS, POP3S). Ports
	// 465, 993 and 995 imply it.
	TLS bool
	// Timeout bounds each exchange (connect, one reply); Deadline bounds
	// the whole audit. Defaults: 10 s and 5 min.
	Timeout  time.Duration
	Deadline time.Duration
	// HeloName is sent in EHLO; default the address literal of our side.
	HeloName string

	// Users are the names or addresses to try (SMTP); none: no enumeration.
	Users []string
	// Domain is appended to names without one, and used in probes.
	Domain string
	// Method is auto, vrfy, expn or rcpt.
	Method string
	// From is the envelope sender of RCPT probes; default the null sender.
	From string
	// Concurrency is the number of connections used to enumerate (default 1).
	Concurrency int
	// Rate bounds guesses per second over all connections; 0: no bound.
	Rate float64
	// SlowReply is the reply time above which a server counts as a
	// tarpit (default 1 s).
	SlowReply time.Duration
	// MaxReconnects bounds reconnections per enumerating connection
	// (default 5); ReconnectDelay is the first wait before one, doubling
	// each time (default 1 s).
	MaxReconnects  int
	ReconnectDelay time.Duration
	// RecycleAfter is how many refusals one connection takes before it is
	// replaced by a fresh one (default 8; negative: never). Many servers
	// slow down after about 10 errors in a session (Postfix's
	// smtpd_soft_error_limit); a fresh session avoids that tarpit without
	// a connection per guess.
	RecycleAfter int

	// NoRelay skips the open-relay check.
	NoRelay bool
	// RelayTo is the outside recipient of relay probes.
	RelayTo string
	// RelayData also sends a harmless test message after DATA to RelayTo
	// when a relay variant's recipient is accepted.
	RelayData bool

	// Settle is how long to wait for replies that should never come
	// (STARTTLS injection, smuggling): silence for this long counts as
	// "not vulnerable". Default 700 ms.
	Settle time.Duration

	// Smuggling runs the SMTP smuggling check: one test message per
	// end-of-data sequence, each hiding a second one, to SmuggleTo
	// (default RelayTo when that is given), which must be accepted.
	Smuggling bool
	SmuggleTo string

	// Progress, when set, is called after each enumeration guess.
	Progress func(done, total int)
	// Dial connects to the target; default net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock (certificate expiry); default time.Now.
	Now func() time.Time
	// Rand is the source for random probe names; default crypto/rand.
	Rand io.Reader
}

// DefaultRelayTo is the outside address used by relay probes. No mail is
// sent to it unless RelayData is set.
const DefaultRelayTo = "relaytest@example.com"

// ErrUsage marks an error in the options rather than in the target.
var ErrUsage = errors.New("usage")

func (o *Options) setDefaults() error {
	if o.Target == "" {
		return fmt.Errorf("%w: no target", ErrUsage)
	}
	host, port, err := net.SplitHostPort(o.Target)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%w: target %q is not HOST:PORT", ErrUsage, o.Target)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Deadline <= 0 {
		o.Deadline = 5 * time.Minute
	}
	switch o.Method = strings.ToLower(o.Method); o.Method {
	case "":
		o.Method = "auto"
	case "auto", "vrfy", "expn", "rcpt":
	default:
		return fmt.Errorf("%w: --method %q: want auto, vrfy, expn or rcpt", ErrUsage, o.Method)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Rate < 0 {
		return fmt.Errorf("%w: --rate must not be negative", ErrUsage)
	}
	if o.SlowReply <= 0 {
		o.SlowReply = time.Second
	}
	if o.MaxReconnects <= 0 {
		o.MaxReconnects = 5
	}
	if o.Settle <= 0 {
		o.Settle = 700 * time.Millisecond
	}
	if o.RecycleAfter == 0 {
		o.RecycleAfter = 8
	}
	if o.ReconnectDelay <= 0 {
		o.ReconnectDelay = time.Second
	}
	if o.Smuggling && o.SmuggleTo == "" {
		if o.RelayTo == "" {
			return fmt.Errorf("%w: --smuggling needs --smuggling-to (or --relay-to), an address the server accepts that you control", ErrUsage)
		}
		o.SmuggleTo = o.RelayTo
	}
	if o.Smuggling && !strings.Contains(o.SmuggleTo, "@") {
		return fmt.Errorf("%w: --smuggling-to %q is not an address", ErrUsage, o.SmuggleTo)
	}
	if o.RelayTo == "" {
		if o.RelayData {
			return fmt.Errorf("%w: --relay-data needs --relay-to, an address you control", ErrUsage)
		}
		o.RelayTo = DefaultRelayTo
	}
	if !strings.Contains(o.RelayTo, "@") {
		return fmt.Errorf("%w: --relay-to %q is not an address", ErrUsage, o.RelayTo)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	o.Domain = strings.ToLower(strings.TrimSpace(o.Domain))
	return nil
}

// port is the target's port.
func (o *Options) port() string {
	_, p, _ := net.SplitHostPort(o.Target)
	return p
}

// host is the target's host.
func (o *Options) host() string {
	h, _, _ := net.SplitHostPort(o.Target)
	return h
}

// tlsConfig accepts any certificate: the audit reports on the certificate
// rather than refusing it.
func (o *Options) tlsConfig() *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10} // #nosec G402 -- inspected, not trusted
	if net.ParseIP(o.host()) == nil {
		cfg.ServerName = o.host()
	}
	return cfg
}

// randomLocal returns a local part no real mailbox has.
func (o *Options) randomLocal() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	if _, err := io.ReadFull(o.Rand, b); err != nil {
		panic("audit: random source failed: " + err.Error())
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "zz" + string(b)
}
