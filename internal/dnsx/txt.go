package dnsx

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// LookupTXT returns the TXT records of name, the strings of each record
// joined into one (as SPF, DKIM and DMARC read them, and as net.LookupTXT
// does). A name that exists without TXT records gives an empty list and no
// error; NXDOMAIN gives ErrNotFound; anything else a *TempError.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = normalize(name)
	if name == "" {
		return nil, fmt.Errorf("empty name: %w", ErrNotFound)
	}
	if r.server == "" {
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		// The system resolver reports "no TXT records" as not found too.
		txts, err := r.sys.LookupTXT(ctx, name)
		if err != nil && len(txts) == 0 {
			return nil, r.sysErr(name, err)
		}
		return txts, nil
	}
	msg, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	owner := cnameTarget(msg, name)
	var out []string
	for _, rr := range msg.Answer {
		if t, ok := rr.(*dns.TXT); ok && normalize(t.Hdr.Name) == owner {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// cnameTarget returns where name's CNAME in msg points ("" if none).
func cnameTarget(msg *dns.Msg, name string) string {
	for i := 0; i < maxCNAME; i++ {
		next := ""
		for _, rr := range msg.Answer {
			if c, ok := rr.(*dns.CNAME); ok && normalize(c.Hdr.Name) == name {
				next = normalize(c.Target)
			}
		}
		if next == "" {
			return name
		}
		name = next
	}
	return name
}

// LookupSRV returns the SRV records at name (e.g. "_imaps._tcp.example.org"),
// with the same error conventions as LookupTXT.
func (r *Resolver) LookupSRV(ctx context.Context, name string) ([]*net.SRV, error) {
	name = normalize(name)
	if name == "" {
		return nil, fmt.Errorf("empty name: %w", ErrNotFound)
	}
	if r.server == "" {
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		_, srvs, err := r.sys.LookupSRV(ctx, "", "", name)
		if err != nil && len(srvs) == 0 {
			return nil, r.sysErr(name, err)
		}
		return srvs, nil
	}
	msg, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var out []*net.SRV
	for _, rr := range msg.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			out = append(out, &net.SRV{Target: s.Target, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
		}
	}
	return out, nil
}

// LookupPTR returns the names of ip (reverse DNS), with the same error
// conventions as LookupTXT.
func (r *Resolver) LookupPTR(ctx context.Context, ip string) ([]string, error) {
	if r.server == "" {
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		names, err := r.sys.LookupAddr(ctx, ip)
		if err != nil && len(names) == 0 {
			return nil, r.sysErr(ip, err)
		}
		return names, nil
	}
	arpa, err := dns.ReverseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ip, ErrNotFound)
	}
	msg, err := r.query(ctx, arpa, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range msg.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	return out, nil
}
