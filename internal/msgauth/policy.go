package msgauth

import (
	"errors"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
)

// decide sets the verdict of res. A temporary DNS error matters when the
// verdict would differ had the failed lookup passed rather than failed:
// then the verdict is TempFail, so the sender retries (never a silent pass,
// never a rejection for our resolver's trouble).
func (c *Checker) decide(res *Result) {
	if res.DMARC.Result == "temperror" {
		res.Verdict, res.Enhanced = TempFail, [3]int{4, 7, 0}
		res.Reason = "DMARC policy of " + res.DMARC.From + " unavailable, try again later"
		return
	}
	worst, wEnh, wReason := c.verdict(res, false)
	best, _, _ := c.verdict(res, true)
	if worst != best {
		res.Verdict, res.Enhanced = TempFail, [3]int{4, 7, 0}
		res.Reason = "DKIM key unavailable, try again later"
		if res.SPF.Result == spf.TempError {
			res.Enhanced = [3]int{4, 7, 24} // RFC 7372: SPF validation error
			res.Reason = "SPF record of " + res.SPF.Domain + " unavailable, try again later"
		}
		return
	}
	res.Verdict, res.Enhanced, res.Reason = worst, wEnh, wReason
}

// verdict applies the policy to res, counting temporary errors as passes
// (tempPass) or as failures.
func (c *Checker) verdict(res *Result, tempPass bool) (Verdict, [3]int, string) {
	d := res.DMARC
	if d.Record != nil {
		if dmarcPass(d.Record, d.From, res.SPF, res.DKIM, tempPass) {
			return Accept, [3]int{}, ""
		}
		switch d.Policy {
		case dmarc.PolicyReject:
			// RFC 7489 10.3.
			return Reject, [3]int{5, 7, 1}, "DMARC policy of " + d.From + " rejects this message"
		case dmarc.PolicyQuarantine:
			return Junk, [3]int{}, "DMARC policy of " + d.From + ": quarantine"
		}
		return Accept, [3]int{}, ""
	}
	if errors.Is(d.Err, errMultipleFrom) || errors.Is(d.Err, errManyDomains) {
		// RFC 7489 6.6.1: no single author domain, so no policy can be
		// told; such messages are a known way around DMARC.
		return Junk, [3]int{}, "no single author domain: " + d.Err.Error()
	}
	spfFail := res.SPF.Result == spf.Fail || !tempPass && res.SPF.Result == spf.TempError
	if spfFail {
		switch c.cfg.SPFFail {
		case SPFReject:
			return Reject, [3]int{5, 7, 23}, "SPF check failed for " + res.SPF.Domain // RFC 7372
		case SPFJunk:
			return Junk, [3]int{}, "SPF check failed for " + res.SPF.Domain
		}
	}
	return Accept, [3]int{}, ""
}
