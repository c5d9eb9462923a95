// Package config loads Postern's TOML configuration file, fills in defaults
// and validates every value, so that a wrong file fails with one clear line
// naming the key and the problem.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole server configuration.
type Config struct {
	Hostname string   `toml:"hostname"`
	DataDir  string   `toml:"data_dir"`
	Listen   Listen   `toml:"listen"`
	TLS      TLS      `toml:"tls"`
	DNS      DNS      `toml:"dns"`
	Delivery Delivery `toml:"delivery"`
	Limits   Limits   `toml:"limits"`
	Queue    Queue    `toml:"queue"`
	// AuthChecks configures SPF, DKIM and DMARC checks on the MX.
	AuthChecks AuthChecks `toml:"auth_checks"`

	// Dev is true when no config file was given and the development
	// defaults are in force (first start creates a domain and a user).
	Dev bool `toml:"-"`
	// File is the path of the loaded config file, empty in dev mode.
	File string `toml:"-"`
}

// Listen holds the listener addresses of each service; an empty list
// disables that service.
type Listen struct {
	SMTP        []string `toml:"smtp"`
	Submission  []string `toml:"submission"`
	Submissions []string `toml:"submissions"`
	IMAP        []string `toml:"imap"`
	IMAPS       []string `toml:"imaps"`
	POP3        []string `toml:"pop3"`
	POP3S       []string `toml:"pop3s"`
	Admin       []string `toml:"admin"`
}

// TLS names the certificate and key; empty means a self-signed pair is
// generated once into the data directory.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// DNS configures the resolver used for outbound delivery and checks.
type DNS struct {
	Resolver string `toml:"resolver"`
}

// Delivery configures outbound delivery.
type Delivery struct {
	MXPort    int    `toml:"mx_port"`
	RelayHost string `toml:"relay_host"`
	// RelayUser and RelayPassword authenticate to the smarthost (AUTH
	// PLAIN, only over TLS).
	RelayUser     string `toml:"relay_user"`
	RelayPassword string `toml:"relay_password"`
}

// Limits bounds what one client may make the server do.
type Limits struct {
	MaxMessageSize      Size     `toml:"max_message_size"`
	MaxRecipients       int      `toml:"max_recipients"`
	MaxConnections      int      `toml:"max_connections"`
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	MaxLineLength       int      `toml:"max_line_length"`
	CommandTimeout      Duration `toml:"command_timeout"`
	DataTimeout         Duration `toml:"data_timeout"`
	ShutdownGrace       Duration `toml:"shutdown_grace"`
	// Failed logins, counted per client IP and per account across SMTP
	// AUTH, IMAP and POP3. Every failure is answered after AuthFailDelay
	// (plus up to half again at random); from AuthDelayAfter failures of
	// the IP or the account within AuthWindow, every attempt waits
	// AuthDelayStep more per failure past it, at most AuthMaxDelay, on top;
	// AuthMaxFailures failures of one IP within AuthWindow refuse that IP
	// on all three for AuthCooldown. An account is only ever delayed,
	// never refused, so no stranger can lock its owner out.
	AuthFailDelay   Duration `toml:"auth_fail_delay"`
	AuthDelayAfter  int      `toml:"auth_delay_after"`  // 0: no growing delay
	AuthDelayStep   Duration `toml:"auth_delay_step"`   // 0: no growing delay
	AuthMaxDelay    Duration `toml:"auth_max_delay"`    // cap of the growing delay
	AuthMaxFailures int      `toml:"auth_max_failures"` // per IP; 0: never refuse
	AuthWindow      Duration `toml:"auth_window"`
	AuthCooldown    Duration `toml:"auth_cooldown"`
	// IMAPIdleTimeout ends an IMAP session silent (or in IDLE) that long;
	// 0 keeps go-imap's 35 minutes. RFC 9051 5.4 asks for at least 30.
	IMAPIdleTimeout Duration `toml:"imap_idle_timeout"`
	// IMAPMaxLineLength bounds an IMAP command's text (literal data not
	// counted); a longer one gets BAD and the connection is closed.
	IMAPMaxLineLength int `toml:"imap_max_line_length"`
	// IMAPMaxLiteralSize bounds the literals of an IMAP command other
	// than APPEND, added up (APPEND is bounded by max_message_size); one
	// that would cross it gets NO [TOOBIG] before the continuation request.
	IMAPMaxLiteralSize Size `toml:"imap_max_literal_size"`
	// POP3IdleTimeout ends a silent POP3 session (RFC 1939 3: at least 10m).
	POP3IdleTimeout Duration `toml:"pop3_idle_timeout"`

	// Address harvesting defence on the MX (0 disables each).
	RcptUnknownDelayAfter int      `toml:"rcpt_unknown_delay_after"` // then each RCPT reply is delayed
	RcptUnknownDelay      Duration `toml:"rcpt_unknown_delay"`       // times the unknown recipients past the threshold
	RcptUnknownMax        int      `toml:"rcpt_unknown_max"`         // per connection, then 421 and close
	RcptUnknownPerIP      int      `toml:"rcpt_unknown_per_ip"`      // per IP within the window, then 421 for the cool-down
	RcptUnknownWindow     Duration `toml:"rcpt_unknown_window"`
	RcptUnknownCooldown   Duration `toml:"rcpt_unknown_cooldown"`
	RcptJitter            Duration `toml:"rcpt_jitter"` // random wait up to this on each unauthenticated RCPT reply; 0: none

	// VRFY true answers VRFY with 252 2.5.2 for every name; false with
	// 502 5.5.1 like EXPN (MX and submission).
	VRFY bool `toml:"vrfy"`

	// LocalIPLiterals are this server's own IP addresses as clients reach
	// it (public ones behind NAT included): a recipient user@[one of them]
	// (RFC 5321 4.1.3, "[IPv6:...]" for IPv6) is delivered as user@ the
	// primary domain, like Postfix's user@[$inet_interfaces]. Empty (the
	// default): every address-literal recipient is refused on the MX.
	LocalIPLiterals []string `toml:"local_ip_literals"`
	// MaxReceivedHeaders is the most Received: fields a message may carry,
	// the one we add included, before it is refused as a mail loop (554
	// 5.4.6); Postfix's hopcount_limit is 50 too.
	MaxReceivedHeaders int `toml:"max_received_headers"`
}

// Queue tunes the outbound queue.
type Queue struct {
	Retry        []Duration `toml:"retry"`         // delays between attempts; the last repeats
	MaxLifetime  Duration   `toml:"max_lifetime"`  // then the message bounces
	DelayWarning Duration   `toml:"delay_warning"` // then the sender gets one delay notice
	Concurrency  int        `toml:"concurrency"`   // deliveries in flight at once
}

func defaultQueue() Queue {
	q := Queue{MaxLifetime: Duration{120 * time.Hour}, DelayWarning: Duration{4 * time.Hour}, Concurrency: 20}
	for _, d := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour} {
		q.Retry = append(q.Retry, Duration{d})
	}
	return q
}

// AuthChecks configures sender authentication (SPF, DKIM, DMARC) of mail
// arriving on the MX; authenticated submission is never checked.
type AuthChecks struct {
	Enabled bool     `toml:"enabled"`  // default true
	SPFFail string   `toml:"spf_fail"` // SPF fail without DMARC: "junk" (default), "reject" or "tag"
	Timeout Duration `toml:"timeout"`  // bounds each phase of lookups (SPF, each DKIM key, DMARC), not the transfer
	// SkipNetworks are client networks (CIDR) whose mail is not checked:
	// local injection, like policyd-spf's and OpenDMARC's defaults.
	SkipNetworks []string `toml:"skip_networks"`
}

func defaultAuthChecks() AuthChecks {
	return AuthChecks{Enabled: true, SPFFail: "junk", Timeout: Duration{20 * time.Second}, SkipNetworks: []string{"127.0.0.0/8", "::1/128"}}
}

// Duration is a time.Duration written as "30s", "5m" in the file.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like \"30s\" or \"5m\": %q", string(b))
	}
	d.Duration = v
	return nil
}

// Size is a byte count written as a number or as "50MiB", "10MB", "512KiB".
type Size int64

// UnmarshalText parses a size with an optional unit.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize parses "1048576", "50MiB", "10MB", "512KiB", "1GiB".
func ParseSize(str string) (int64, error) {
	t := strings.TrimSpace(str)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size like \"50MiB\" or 1048576: %q", str)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size too large: %q", str)
	}
	return n * mult, nil
}

// Error is a configuration error; its text is the one line shown to the user.
type Error struct {
	File string
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	where := "config"
	if e.File != "" {
		where = e.File
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", where, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Msg)
}

func defaultLimits() Limits {
	return Limits{
		MaxMessageSize:      50 << 20,
		MaxRecipients:       100,
		MaxConnections:      1000,
		MaxConnectionsPerIP: 20,
		MaxLineLength:       64 << 10,
		CommandTimeout:      Duration{5 * time.Minute},
		DataTimeout:         Duration{10 * time.Minute},
		ShutdownGrace:       Duration{5 * time.Second},
		AuthFailDelay:       Duration{time.Second},
		AuthDelayAfter:      5,
		AuthDelayStep:       Duration{time.Second},
		AuthMaxDelay:        Duration{15 * time.Second},
		AuthMaxFailures:     20,
		AuthWindow:          Duration{15 * time.Minute},
		AuthCooldown:        Duration{15 * time.Minute},
		POP3IdleTimeout:     Duration{10 * time.Minute},
		IMAPMaxLineLength:   64 << 10,
		IMAPMaxLiteralSize:  64 << 10,

		RcptUnknownDelayAfter: 3,
		RcptUnknownDelay:      Duration{time.Second},
		RcptUnknownMax:        10,
		RcptUnknownPerIP:      20,
		RcptUnknownWindow:     Duration{10 * time.Minute},
		RcptUnknownCooldown:   Duration{10 * time.Minute},
		RcptJitter:            Duration{2 * time.Millisecond},
		VRFY:                  true,
		MaxReceivedHeaders:    50,
	}
}

// Production returns the defaults that apply to keys missing from a config file.
func Production() *Config {
	return &Config{
		Hostname: "localhost",
		DataDir:  "/var/lib/postern",
		Listen: Listen{
			SMTP:        []string{":25"},
			Submission:  []string{":587"},
			Submissions: []string{":465"},
			IMAP:        []string{":143"},
			IMAPS:       []string{":993"},
			POP3:        []string{":110"},
			POP3S:       []string{":995"},
			Admin:       []string{"127.0.0.1:8025"},
		},
		Delivery:   Delivery{MXPort: 25},
		Queue:      defaultQueue(),
		Limits:     defaultLimits(),
		AuthChecks: defaultAuthChecks(),
	}
}

// Development returns the configuration used when no file is given:
// data in ./postern-data, hostname localhost, loopback listeners on high ports.
func Development() *Config {
	return &Config{
		Hostname: "localhost",
		DataDir:  "postern-data",
		Listen: Listen{
			SMTP:        []string{"127.0.0.1:2525"},
			Submission:  []string{"127.0.0.1:2587"},
			Submissions: []string{"127.0.0.1:2465"},
			IMAP:        []string{"127.0.0.1:2143"},
			IMAPS:       []string{"127.0.0.1:2993"},
			POP3:        []string{"127.0.0.1:2110"},
			POP3S:       []string{"127.0.0.1:2995"},
			Admin:       []string{"127.0.0.1:8025"},
		},
		Delivery:   Delivery{MXPort: 25},
		Queue:      defaultQueue(),
		Limits:     defaultLimits(),
		AuthChecks: defaultAuthChecks(),
		Dev:        true,
	}
}

// Load reads the file at path; an empty path gives the development defaults.
// Every error is an *Error whose text is one line.
func Load(path string) (*Config, error) {
	if path == "" {
		c := Development()
		if err := c.validate(); err != nil {
			return nil, err
		}
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPathError(err))}
	}
	c, err := Parse(path, b)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Join(filepath.Dir(path), c.DataDir)
	}
	for _, p := range []*string{&c.TLS.Cert, &c.TLS.Key} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(filepath.Dir(path), *p)
		}
	}
	return c, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes and validates a config file's contents; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	c := Production()
	c.File = name
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := strings.ReplaceAll(pe.Message, "\n", " ")
			key := pe.LastKey
			if m := dupKeyRe.FindStringSubmatch(msg); m != nil {
				// "Key 'x' has already been defined." names the key twice.
				key, msg = m[1], "duplicate key (already defined above)"
			}
			return nil, &Error{File: fmt.Sprintf("%s:%d", name, pe.Position.Line), Key: key, Msg: msg}
		}
		return nil, decodeError(name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, &Error{File: name, Key: und[0].String(), Msg: "unknown key"}
	}
	// A file that lowers max_connections below the default per-IP limit
	// lowers that too, rather than failing on a key it never set.
	if !md.IsDefined("limits", "max_connections_per_ip") && c.Limits.MaxConnectionsPerIP > c.Limits.MaxConnections {
		c.Limits.MaxConnectionsPerIP = c.Limits.MaxConnections
	}
	if err := c.validate(); err != nil {
		err.(*Error).File = name
		return nil, err
	}
	return c, nil
}

var typeErrRe = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)
var incompatRe = regexp.MustCompile(`incompatible types: TOML value has type (\S+); destination has type (\S+)`)
var mismatchRe = regexp.MustCompile(`type mismatch for \S+: expected (\S+) but found (\S+)`)
var dupKeyRe = regexp.MustCompile(`^Key '([^']*)' has already been defined\.$`)

// decodeError turns BurntSushi/toml's type errors into "file:line: key: problem".
func decodeError(name string, err error) error {
	s := oneLine(err.Error())
	m := typeErrRe.FindStringSubmatch(s)
	if m == nil {
		return &Error{File: name, Msg: strings.TrimPrefix(s, "toml: ")}
	}
	msg := m[3]
	if im := incompatRe.FindStringSubmatch(msg); im != nil {
		want := im[2]
		if want == "slice" {
			want = "list"
		}
		msg = fmt.Sprintf("wrong type: got %s, want %s", tomlTypeName(im[1]), want)
	} else if mm := mismatchRe.FindStringSubmatch(msg); mm != nil {
		// "type mismatch for config.Listen: expected table but found int64"
		// names a Go type; say what the file should hold instead.
		msg = fmt.Sprintf("wrong type: got %s, want %s", tomlTypeName(mm[2]), mm[1])
	}
	return &Error{File: name + ":" + m[1], Key: m[2], Msg: msg}
}

// tomlTypeName names the type of a decoded TOML value as the file shows it.
func tomlTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "list"
	case strings.HasPrefix(goType, "map["):
		return "table"
	}
	return strings.TrimSuffix(strings.TrimSuffix(goType, "64"), "32")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (c *Config) validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n/@") {
		return bad("hostname", "must be a host name like \"mail.example.org\" (got %q)", c.Hostname)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	lists := []struct {
		key   string
		addrs []string
	}{
		{"listen.smtp", c.Listen.SMTP}, {"listen.submission", c.Listen.Submission},
		{"listen.submissions", c.Listen.Submissions}, {"listen.imap", c.Listen.IMAP},
		{"listen.imaps", c.Listen.IMAPS}, {"listen.pop3", c.Listen.POP3},
		{"listen.pop3s", c.Listen.POP3S}, {"listen.admin", c.Listen.Admin},
	}
	for _, l := range lists {
		for _, a := range l.addrs {
			if err := checkHostPort(a, true); err != nil {
				return bad(l.key, "%q: %v", a, err)
			}
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return bad("tls.key", "cert and key must be given together or both left empty")
	}
	if c.DNS.Resolver != "" {
		if err := checkHostPort(c.DNS.Resolver, false); err != nil {
			return bad("dns.resolver", "%q: %v", c.DNS.Resolver, err)
		}
	}
	if c.Delivery.MXPort < 1 || c.Delivery.MXPort > 65535 {
		return bad("delivery.mx_port", "must be a port from 1 to 65535 (got %d)", c.Delivery.MXPort)
	}
	if c.Delivery.RelayHost != "" {
		if err := checkHostPort(c.Delivery.RelayHost, false); err != nil {
			return bad("delivery.relay_host", "%q: %v", c.Delivery.RelayHost, err)
		}
	}
	if (c.Delivery.RelayUser != "" || c.Delivery.RelayPassword != "") && c.Delivery.RelayHost == "" {
		return bad("delivery.relay_user", "relay_user and relay_password need delivery.relay_host")
	}
	l := c.Limits
	if l.MaxMessageSize < 1024 || l.MaxMessageSize > 4<<30 {
		return bad("limits.max_message_size", "must be from 1KiB to 4GiB (got %d bytes)", int64(l.MaxMessageSize))
	}
	if l.MaxRecipients < 1 || l.MaxRecipients > 100000 {
		return bad("limits.max_recipients", "must be from 1 to 100000 (got %d)", l.MaxRecipients)
	}
	if l.MaxConnections < 1 {
		return bad("limits.max_connections", "must be at least 1 (got %d)", l.MaxConnections)
	}
	if l.MaxConnectionsPerIP < 1 || l.MaxConnectionsPerIP > l.MaxConnections {
		return bad("limits.max_connections_per_ip", "must be from 1 to limits.max_connections (%d) (got %d)", l.MaxConnections, l.MaxConnectionsPerIP)
	}
	if l.MaxLineLength < 512 || l.MaxLineLength > 1<<20 {
		return bad("limits.max_line_length", "must be from 512 to 1048576 (got %d); RFC 5321 needs at least 512", l.MaxLineLength)
	}
	if l.IMAPMaxLineLength < 8192 || l.IMAPMaxLineLength > 16<<20 {
		return bad("limits.imap_max_line_length", "must be from 8192 to 16777216 (got %d); RFC 2683 asks servers to take lines of 8192", l.IMAPMaxLineLength)
	}
	if l.IMAPMaxLiteralSize < 4<<10 || l.IMAPMaxLiteralSize > 16<<20 {
		return bad("limits.imap_max_literal_size", "must be from 4KiB to 16MiB (got %d bytes); RFC 7888 lets clients send 4096 without asking", int64(l.IMAPMaxLiteralSize))
	}
	for _, d := range []struct {
		key string
		v   Duration
		min time.Duration
	}{{"limits.command_timeout", l.CommandTimeout, time.Second}, {"limits.data_timeout", l.DataTimeout, time.Second}, {"limits.shutdown_grace", l.ShutdownGrace, 0}, {"limits.auth_fail_delay", l.AuthFailDelay, 0},
		{"queue.max_lifetime", c.Queue.MaxLifetime, time.Minute}, {"queue.delay_warning", c.Queue.DelayWarning, 0}} {
		if d.v.Duration < d.min {
			return bad(d.key, "must be at least %v (got %v)", d.min, d.v.Duration)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"limits.rcpt_unknown_delay_after", l.RcptUnknownDelayAfter}, {"limits.rcpt_unknown_max", l.RcptUnknownMax}, {"limits.rcpt_unknown_per_ip", l.RcptUnknownPerIP}} {
		if n.v < 0 {
			return bad(n.key, "must be 0 (off) or more (got %d)", n.v)
		}
	}
	if l.RcptUnknownPerIP > 0 && (l.RcptUnknownWindow.Duration < time.Second || l.RcptUnknownCooldown.Duration < time.Second) {
		return bad("limits.rcpt_unknown_window", "rcpt_unknown_window and rcpt_unknown_cooldown must be at least 1s when rcpt_unknown_per_ip is set")
	}
	if d := l.POP3IdleTimeout.Duration; d < time.Minute || d > 24*time.Hour {
		return bad("limits.pop3_idle_timeout", "must be from 1m to 24h (got %v); RFC 1939 asks for at least 10m", d)
	}
	if d := l.IMAPIdleTimeout.Duration; d != 0 && (d < time.Minute || d > 24*time.Hour) {
		return bad("limits.imap_idle_timeout", "must be 0 (35m) or from 1m to 24h (got %v); RFC 9051 asks for at least 30m", d)
	}
	if d := l.RcptJitter.Duration; d < 0 || d > time.Second {
		return bad("limits.rcpt_jitter", "must be from 0 (off) to 1s (got %v)", d)
	}
	if l.AuthDelayAfter < 0 || l.AuthMaxFailures < 0 {
		return bad("limits.auth_max_failures", "auth_delay_after and auth_max_failures must be 0 (off) or more (got %d and %d)", l.AuthDelayAfter, l.AuthMaxFailures)
	}
	if d := l.AuthFailDelay.Duration; d > time.Minute {
		return bad("limits.auth_fail_delay", "must be at most 1m (got %v): every failed login waits it", d)
	}
	if l.AuthDelayStep.Duration < 0 || l.AuthMaxDelay.Duration < 0 || l.AuthMaxDelay.Duration > 5*time.Minute {
		return bad("limits.auth_max_delay", "auth_delay_step must not be negative and auth_max_delay must be from 0 (no cap) to 5m (got %v and %v)", l.AuthDelayStep.Duration, l.AuthMaxDelay.Duration)
	}
	if (l.AuthMaxFailures > 0 || l.AuthDelayAfter > 0) && l.AuthWindow.Duration < time.Second {
		return bad("limits.auth_window", "must be at least 1s when auth_max_failures or auth_delay_after is set (got %v)", l.AuthWindow.Duration)
	}
	if l.AuthMaxFailures > 0 && l.AuthCooldown.Duration < time.Second {
		return bad("limits.auth_cooldown", "must be at least 1s when auth_max_failures is set (got %v)", l.AuthCooldown.Duration)
	}
	if l.MaxReceivedHeaders < 10 || l.MaxReceivedHeaders > 1000 {
		return bad("limits.max_received_headers", "must be from 10 to 1000 (got %d)", l.MaxReceivedHeaders)
	}
	for _, a := range l.LocalIPLiterals {
		if ip, err := netip.ParseAddr(a); err != nil || ip.Zone() != "" || ip.Is4In6() {
			return bad("limits.local_ip_literals", "%q is not an IP address like \"192.0.2.1\" or \"2001:db8::25\"", a)
		}
	}
	if l.RcptUnknownDelay.Duration < 0 {
		return bad("limits.rcpt_unknown_delay", "must not be negative")
	}
	if len(c.Queue.Retry) == 0 {
		return bad("queue.retry", "must list at least one delay, like [\"1m\", \"5m\"]")
	}
	for _, d := range c.Queue.Retry {
		if d.Duration < time.Second {
			return bad("queue.retry", "each delay must be at least 1s (got %v)", d.Duration)
		}
	}
	switch c.AuthChecks.SPFFail {
	case "junk", "reject", "tag":
	default:
		return bad("auth_checks.spf_fail", "must be \"junk\", \"reject\" or \"tag\" (got %q)", c.AuthChecks.SPFFail)
	}
	for _, n := range c.AuthChecks.SkipNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			return bad("auth_checks.skip_networks", "%q is not a network like \"127.0.0.0/8\"", n)
		}
	}
	if d := c.AuthChecks.Timeout.Duration; d < time.Second || d > 5*time.Minute {
		return bad("auth_checks.timeout", "must be from 1s to 5m (got %v)", d)
	}
	if c.Queue.Concurrency < 1 || c.Queue.Concurrency > 10000 {
		return bad("queue.concurrency", "must be from 1 to 10000 (got %d)", c.Queue.Concurrency)
	}
	return nil
}

// checkHostPort checks "host:port"; an empty host is allowed for listeners.
func checkHostPort(a string, emptyHostOK bool) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("not a \"host:port\" address")
	}
	if host == "" && !emptyHostOK {
		return errors.New("host is missing")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return errors.New("port must be a number from 0 to 65535")
	}
	return nil
}
