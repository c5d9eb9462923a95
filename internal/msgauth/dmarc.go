package msgauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"blitiri.com.ar/go/spf"
)

// Errors that leave a message without a single author domain.
var (
	errMultipleFrom = errors.New("multiple From fields")
	errManyDomains  = errors.New("From addresses in several domains")
)

// DMARCResult is the DMARC evaluation of a message (RFC 7489 6.6).
type DMARCResult struct {
	Result string // none, pass, fail, temperror or permerror
	From   string // the author domain
	Record *dmarc.Record
	// Policy is the policy that applies (p, or sp for a subdomain found
	// through the organizational domain), after pct sampling.
	Policy dmarc.Policy
	Err    error
}

// checkDMARC evaluates DMARC for the From fields of a message, given its
// SPF and DKIM results. Temporary errors in those count as not passing
// here; decide weighs them.
func (c *Checker) checkDMARC(ctx context.Context, froms []string, sp SPFResult, dk []DKIMResult) DMARCResult {
	switch len(froms) {
	case 0:
		return DMARCResult{Result: "none"}
	case 1:
	default:
		// RFC 7489 6.6.1: no single author domain.
		return DMARCResult{Result: "permerror", Err: errMultipleFrom}
	}
	from, err := authorDomain(froms[0])
	if err != nil {
		return DMARCResult{Result: "permerror", Err: err}
	}
	d := DMARCResult{From: from}
	rec, atOrg, err := c.lookupDMARC(ctx, from)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		d.Result = "none"
		return d
	case dmarc.IsTempFail(err):
		d.Result, d.Err = "temperror", err
		return d
	case err != nil:
		d.Result, d.Err = "permerror", err
		return d
	}
	d.Record = rec
	d.Policy = rec.Policy
	if atOrg && rec.SubdomainPolicy != "" {
		d.Policy = rec.SubdomainPolicy
	}
	if rec.Percent != nil && *rec.Percent < 100 && rand.IntN(100) >= *rec.Percent {
		// RFC 7489 6.6.4: outside the sample, the next policy down.
		switch d.Policy {
		case dmarc.PolicyReject:
			d.Policy = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			d.Policy = dmarc.PolicyNone
		}
	}
	if dmarcPass(rec, from, sp, dk, false) {
		d.Result = "pass"
	} else {
		d.Result = "fail"
	}
	return d
}

// dmarcPass reports whether an identifier passed and is aligned with the
// author domain (RFC 7489 3.1). With tempPass, temporary errors count as
// passes (the best case).
func dmarcPass(rec *dmarc.Record, from string, sp SPFResult, dk []DKIMResult, tempPass bool) bool {
	if sp.Result == spf.Pass || tempPass && sp.Result == spf.TempError {
		if aligned(sp.Domain, from, rec.SPFAlignment == dmarc.AlignmentStrict) {
			return true
		}
	}
	for _, k := range dk {
		if k.Result == "pass" || tempPass && k.Result == "temperror" {
			if aligned(k.Domain, from, rec.DKIMAlignment == dmarc.AlignmentStrict) {
				return true
			}
		}
	}
	return false
}

// lookupDMARC finds the policy of domain at _dmarc.domain or, failing that,
// at its organizational domain (RFC 7489 6.6.3); atOrg says it was there.
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (rec *dmarc.Record, atOrg bool, err error) {
	opts := &dmarc.LookupOptions{LookupTXT: txtLookup(ctx, c.cfg.Resolver)}
	rec, err = dmarc.LookupWithOptions(domain, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, false, err
	}
	org := OrgDomain(domain)
	if org == domain {
		return nil, false, err
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	return rec, true, err
}

// OrgDomain returns the organizational domain of domain (RFC 7489 3.2):
// the public suffix plus one label.
func OrgDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned reports identifier alignment (RFC 7489 3.1.1, 3.1.2).
func aligned(id, from string, strict bool) bool {
	if id == "" || from == "" {
		return false
	}
	if strict {
		return strings.EqualFold(id, from)
	}
	return OrgDomain(id) == OrgDomain(from)
}

// authorDomain extracts the domain of the From field's address; a From with
// several addresses in different domains has no single author domain.
func authorDomain(value string) (string, error) {
	var domains []string
	if list, err := mail.ParseAddressList(value); err == nil {
		for _, a := range list {
			domains = append(domains, domainOf(a.Address))
		}
	} else {
		// Undecodable display names and the like: take the address in the
		// last angle brackets, or the whole value.
		v := strings.TrimSpace(value)
		if i := strings.LastIndexByte(v, '<'); i >= 0 {
			v = strings.TrimSuffix(strings.TrimSpace(v[i+1:]), ">")
		}
		domains = append(domains, domainOf(v))
	}
	d := ""
	for _, x := range domains {
		if x == "" {
			return "", errors.New("From address without a domain")
		}
		if d != "" && d != x {
			return "", errManyDomains
		}
		d = x
	}
	if d == "" {
		return "", errors.New("empty From field")
	}
	return d, nil
}

func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(addr[at+1:]), "."))
}
