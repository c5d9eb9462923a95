package msgauth

import (
	"context"
	"net"
	"strings"
	"sync"

	"blitiri.com.ar/go/spf"
)

// checkSPF evaluates SPF for the MAIL FROM and HELO identities (RFC 7208
// 2.3, 2.4), in parallel. With the null sender, the MAIL FROM identity is
// postmaster@HELO and both results are the same evaluation.
func (c *Checker) checkSPF(ctx context.Context, ip net.IP, helo, mailFrom string) (mf, h SPFResult) {
	opts := []spf.Option{spf.WithContext(ctx), spf.WithResolver(spfResolver{c.cfg.Resolver})}
	heloOK := validHELO(helo)
	var wg sync.WaitGroup
	if heloOK {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h = SPFResult{Identity: helo, Domain: strings.ToLower(helo)}
			h.Result, h.Err = spf.CheckHostWithSender(ip, helo, "postmaster@"+helo, opts...)
		}()
	}
	if mailFrom != "" {
		at := strings.LastIndexByte(mailFrom, '@')
		mf = SPFResult{Identity: mailFrom, Domain: strings.ToLower(mailFrom[at+1:])}
		mf.Result, mf.Err = spf.CheckHostWithSender(ip, helo, mailFrom, opts...)
	}
	wg.Wait()
	if mailFrom == "" {
		mf = h
		mf.Identity = "postmaster@" + helo
		if !heloOK {
			mf = SPFResult{Result: spf.None, Identity: "postmaster@" + helo}
		}
	}
	return mf, h
}

// validHELO reports whether helo is a domain name SPF can check (not an
// address literal nor a single label).
func validHELO(helo string) bool {
	if helo == "" || strings.HasPrefix(helo, "[") || net.ParseIP(helo) != nil || !strings.Contains(helo, ".") || len(helo) > 253 {
		return false
	}
	for _, r := range helo {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}
