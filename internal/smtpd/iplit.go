package smtpd

import (
	"net/netip"
	"strings"
)

// ownIPLiteral reports whether domain is an address literal (RFC 5321
// 4.1.3: "[192.0.2.1]" or "[IPv6:2001:db8::1]") naming one of the
// server's LocalIPLiterals. Like Postfix's user@[$inet_interfaces], such a
// recipient is local: it stands for the same local part in the primary
// domain (see postmasterDomain). Any other literal never is.
func (s *Server) ownIPLiteral(domain string) bool {
	if len(s.cfg.LocalIPLiterals) == 0 || len(domain) < 3 || domain[0] != '[' || domain[len(domain)-1] != ']' {
		return false
	}
	lit := domain[1 : len(domain)-1]
	var ip netip.Addr
	var err error
	if len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:") {
		ip, err = netip.ParseAddr(lit[5:])
		if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
			return false
		}
	} else {
		ip, err = netip.ParseAddr(lit)
		if err != nil || !ip.Is4() {
			return false
		}
	}
	for _, a := range s.cfg.LocalIPLiterals {
		if a.Unmap() == ip {
			return true
		}
	}
	return false
}
