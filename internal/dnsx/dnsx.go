// Package dnsx resolves the names outbound mail needs (MX, A and AAAA) through
// either a configured DNS server ([dns] resolver, spoken to with miekg/dns) or
// the system resolver. It tells a name that does not exist (ErrNotFound) and a
// domain that accepts no mail (ErrNullMX, RFC 7505) from temporary trouble
// (IsTemporary), because the first two bounce a message and the last retries it.
package dnsx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrNotFound reports that a name does not exist (NXDOMAIN) or has no usable
// address: a permanent condition.
var ErrNotFound = errors.New("no such domain")

// ErrNullMX reports a domain that publishes a null MX (RFC 7505): it accepts no mail.
var ErrNullMX = errors.New("domain accepts no mail (null MX)")

// maxCNAME bounds how many CNAMEs LookupIP follows.
const maxCNAME = 8

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // lower case, without the trailing dot
	Pref uint16
}

// TempError is a DNS failure that may go away: SERVFAIL, REFUSED, a timeout,
// an unreachable server.
type TempError struct {
	Name   string
	Reason string
}

func (e *TempError) Error() string {
	return fmt.Sprintf("dns lookup of %s: %s", e.Name, e.Reason)
}

// IsTemporary reports whether err is a DNS failure worth retrying later.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var te *TempError
	if errors.As(err, &te) {
		return true
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTemporary || de.IsTimeout || !de.IsNotFound
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNullMX) {
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Resolver looks up mail routing records.
type Resolver struct {
	server  string // "host:port"; empty: the system resolver
	timeout time.Duration
	sys     *net.Resolver
	cache   *cache // for server
}

// New returns a Resolver that asks server ("host:port") or, when server is
// empty, the system resolver. timeout bounds each query (5 s when zero).
func New(server string, timeout time.Duration) *Resolver {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if server != "" {
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
		}
	}
	return &Resolver{server: server, timeout: timeout, sys: net.DefaultResolver, cache: newCache(time.Now)}
}

// normalize lower-cases name and strips its trailing dot.
func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// LookupMX returns the MX records of domain, by preference, in random order
// within one preference (RFC 5321 5.1). It returns an empty list and no error
// when the domain exists without MX records (the caller then uses the domain
// itself, the implicit MX), ErrNullMX for a null MX, ErrNotFound for NXDOMAIN
// (the system resolver cannot tell NXDOMAIN from no records: the caller should
// try the implicit MX on ErrNotFound too) and a *TempError otherwise.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	domain = normalize(domain)
	if domain == "" {
		return nil, fmt.Errorf("empty domain: %w", ErrNotFound)
	}
	var mxs []MX
	if r.server == "" {
		recs, err := r.sys.LookupMX(ctx, domain)
		if err != nil && len(recs) == 0 {
			return nil, r.sysErr(domain, err)
		}
		for _, m := range recs {
			mxs = append(mxs, MX{Host: normalize(m.Host), Pref: m.Pref})
		}
	} else {
		msg, err := r.query(ctx, domain, dns.TypeMX)
		if err != nil {
			return nil, err
		}
		for _, rr := range msg.Answer {
			if m, ok := rr.(*dns.MX); ok {
				mxs = append(mxs, MX{Host: normalize(m.Mx), Pref: m.Preference})
			}
		}
	}
	// RFC 7505 3: a single MX with the root as its target.
	if len(mxs) == 1 && mxs[0].Host == "" {
		return nil, fmt.Errorf("%s: %w", domain, ErrNullMX)
	}
	// A null MX among real ones is a misconfiguration: ignore it.
	out := mxs[:0]
	for _, m := range mxs {
		if m.Host != "" {
			out = append(out, m)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pref < out[j].Pref })
	return out, nil
}

// LookupIP returns the IPv4 and IPv6 addresses of host (IPv4 first), following
// CNAMEs up to a bounded depth. A host that does not exist or has no address
// gives ErrNotFound; a failure of both lookups gives a *TempError.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]net.IP, error) {
	host = normalize(host)
	if host == "" {
		return nil, fmt.Errorf("empty host name: %w", ErrNotFound)
	}
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		// RFC 6761 6.3: never sent to a DNS server.
		return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, nil
	}
	if r.server == "" {
		addrs, err := r.sys.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, r.sysErr(host, err)
		}
		ips := make([]net.IP, 0, len(addrs))
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
		sortV4First(ips)
		return ips, nil
	}
	v4, err4 := r.lookupAddr(ctx, host, dns.TypeA)
	v6, err6 := r.lookupAddr(ctx, host, dns.TypeAAAA)
	ips := append(v4, v6...)
	switch {
	case len(ips) > 0:
		return ips, nil
	case errors.Is(err4, ErrNotFound) || errors.Is(err6, ErrNotFound):
		return nil, fmt.Errorf("%s: %w", host, ErrNotFound)
	case err4 != nil:
		return nil, err4
	case err6 != nil:
		return nil, err6
	}
	return nil, fmt.Errorf("%s has no address: %w", host, ErrNotFound)
}

// lookupAddr asks for one address type, following CNAMEs the server did not
// resolve itself.
func (r *Resolver) lookupAddr(ctx context.Context, host string, qtype uint16) ([]net.IP, error) {
	name := host
	hops := 0
	for {
		msg, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		// Walk the answer's CNAME chain from name.
		for {
			var ips []net.IP
			next := ""
			for _, rr := range msg.Answer {
				if normalize(rr.Header().Name) != name {
					continue
				}
				switch v := rr.(type) {
				case *dns.A:
					if qtype == dns.TypeA {
						ips = append(ips, v.A)
					}
				case *dns.AAAA:
					if qtype == dns.TypeAAAA {
						ips = append(ips, v.AAAA)
					}
				case *dns.CNAME:
					next = normalize(v.Target)
				}
			}
			if len(ips) > 0 {
				return ips, nil
			}
			if next == "" {
				return nil, nil // no data of this type
			}
			if hops++; hops > maxCNAME {
				return nil, &TempError{Name: host, Reason: "CNAME chain too long"}
			}
			name = next
			if !answerHas(msg, name) {
				break // ask about the CNAME's target ourselves
			}
		}
	}
}

func answerHas(msg *dns.Msg, name string) bool {
	for _, rr := range msg.Answer {
		if normalize(rr.Header().Name) == name {
			return true
		}
	}
	return false
}

// query asks the configured server one question (MX, A and AAAA through
// the cache) and maps its response code to our errors.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	var resp *dns.Msg
	var err error
	if cached(qtype) {
		resp, err = r.cache.get(ctx, name, qtype, func() (*dns.Msg, error) { return r.exchange(ctx, name, qtype) })
	} else {
		resp, err = r.exchange(ctx, name, qtype)
	}
	if err != nil {
		return nil, &TempError{Name: name, Reason: err.Error()}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
		return resp, nil
	case dns.RcodeNameError:
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	default:
		return nil, &TempError{Name: name, Reason: dns.RcodeToString[resp.Rcode]}
	}
}

// exchange sends one question to the configured server, over UDP and again
// over TCP when the answer is truncated.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, q, r.server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, r.server)
	}
	return resp, err
}

// sysErr maps an error of net.Resolver to ours.
func (r *Resolver) sysErr(name string, err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return &TempError{Name: name, Reason: err.Error()}
}

func sortV4First(ips []net.IP) {
	sort.SliceStable(ips, func(i, j int) bool {
		return ips[i].To4() != nil && ips[j].To4() == nil
	})
}
