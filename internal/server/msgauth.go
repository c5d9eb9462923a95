package server

import (
	"context"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/postern-mail/postern/internal/config"
	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/msgauth"
	"github.com/postern-mail/postern/internal/smtpd"
)

// senderChecker gives the MX msgauth's SPF, DKIM and DMARC checks.
type senderChecker struct{ c *msgauth.Checker }

// newSenderChecker returns the MX's Checker, nil when [auth_checks] is off.
func newSenderChecker(cfg *config.Config) smtpd.Checker {
	if !cfg.AuthChecks.Enabled {
		return nil
	}
	var skip []netip.Prefix
	for _, n := range cfg.AuthChecks.SkipNetworks {
		skip = append(skip, netip.MustParsePrefix(n)) // validated by config
	}
	return senderChecker{msgauth.New(msgauth.Config{
		Hostname: cfg.Hostname,
		Resolver: dnsx.New(cfg.DNS.Resolver, 4*time.Second),
		Timeout:  cfg.AuthChecks.Timeout.Duration,
		SPFFail:  msgauth.SPFAction(cfg.AuthChecks.SPFFail),
		Skip:     skip,
	})}
}

func (s senderChecker) Check(ctx context.Context, ip net.IP, helo, mailFrom string, msg io.Reader) (smtpd.CheckResult, error) {
	res, err := s.c.Check(ctx, ip, helo, mailFrom, msg)
	if err != nil {
		return smtpd.CheckResult{}, err
	}
	return smtpd.CheckResult{
		Header:   res.Header,
		Verdict:  verdicts[res.Verdict],
		Enhanced: res.Enhanced,
		Reason:   res.Reason,
		Summary:  res.Summary(),
	}, nil
}

var verdicts = map[msgauth.Verdict]smtpd.Verdict{
	msgauth.Accept:   smtpd.VerdictAccept,
	msgauth.Junk:     smtpd.VerdictJunk,
	msgauth.Reject:   smtpd.VerdictReject,
	msgauth.TempFail: smtpd.VerdictTempFail,
}
