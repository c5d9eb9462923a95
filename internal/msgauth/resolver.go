package msgauth

import (
	"context"
	"errors"
	"net"

	"github.com/postern-mail/postern/internal/dnsx"
)

// dnsError maps a dnsx error to the *net.DNSError that blitiri.com.ar/go/spf
// and go-msgauth classify (they use type assertions, so it is returned
// unwrapped): not found for NXDOMAIN, temporary for anything else.
func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, dnsx.ErrNotFound) {
		return &net.DNSError{Err: "no such domain", Name: name, IsNotFound: true}
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

// spfResolver gives blitiri.com.ar/go/spf our resolver.
type spfResolver struct{ r *dnsx.Resolver }

func (s spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := lookupTXTRetry(ctx, s.r, name)
	return txts, dnsError(name, err)
}

// lookupTXTRetry asks again after a temporary failure (a lost UDP packet,
// a slow upstream) while ctx leaves time: a verdict of TempFail costs the
// sender a retry of the whole message.
func lookupTXTRetry(ctx context.Context, r *dnsx.Resolver, name string) ([]string, error) {
	for i := 0; ; i++ {
		txts, err := r.LookupTXT(ctx, name)
		if err == nil || !dnsx.IsTemporary(err) || i == 2 || ctx.Err() != nil {
			return txts, err
		}
	}
}

func (s spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := s.r.LookupMX(ctx, name)
	if errors.Is(err, dnsx.ErrNullMX) {
		return nil, nil // RFC 7505: no hosts, so the mx mechanism matches nothing
	}
	if err != nil {
		return nil, dnsError(name, err)
	}
	out := make([]*net.MX, 0, len(mxs))
	for _, m := range mxs {
		out = append(out, &net.MX{Host: m.Host + ".", Pref: m.Pref})
	}
	return out, nil
}

func (s spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := s.r.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: ip})
	}
	return out, nil
}

func (s spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	names, err := s.r.LookupPTR(ctx, addr)
	return names, dnsError(addr, err)
}

// txtLookup is the lookup function go-msgauth's DKIM and DMARC code takes,
// bound to ctx.
func txtLookup(ctx context.Context, r *dnsx.Resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, err := lookupTXTRetry(ctx, r, name)
		return txts, dnsError(name, err)
	}
}
