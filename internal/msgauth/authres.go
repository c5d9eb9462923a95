package msgauth

import (
	"strings"
)

// formatHeader writes the Authentication-Results field (RFC 8601 2.2), one
// result per folded line.
func (c *Checker) formatHeader(res *Result) string {
	var parts []string
	parts = append(parts, "spf="+string(res.SPF.Result)+reason(res.SPF.Result != "pass" && res.SPF.Result != "none", res.SPF.Err)+
		" smtp.mailfrom="+pvalue(res.SPF.Identity))
	if res.SPFHelo.Result != "" {
		parts = append(parts, "spf="+string(res.SPFHelo.Result)+reason(res.SPFHelo.Result != "pass" && res.SPFHelo.Result != "none", res.SPFHelo.Err)+
			" smtp.helo="+pvalue(res.SPFHelo.Identity))
	}
	if len(res.DKIM) == 0 {
		parts = append(parts, "dkim=none")
	}
	for _, k := range res.DKIM {
		s := "dkim=" + k.Result + reason(k.Result != "pass", k.Err) + " header.d=" + pvalue(k.Domain)
		if k.Selector != "" {
			s += " header.s=" + pvalue(k.Selector)
		}
		if k.Algorithm != "" {
			s += " header.a=" + pvalue(k.Algorithm)
		}
		if k.B != "" {
			s += " header.b=" + pvalue(k.B)
		}
		parts = append(parts, s)
	}
	d := res.DMARC
	s := "dmarc=" + d.Result
	if d.Record != nil {
		s += " (p=" + string(d.Record.Policy)
		if d.Record.SubdomainPolicy != "" {
			s += " sp=" + string(d.Record.SubdomainPolicy)
		}
		dis := "none"
		if d.Result == "fail" && d.Policy != "" {
			dis = string(d.Policy)
		}
		s += " dis=" + dis + ")"
	} else {
		s += reason(d.Err != nil, d.Err)
	}
	if d.From != "" {
		s += " header.from=" + pvalue(d.From)
	}
	parts = append(parts, s)
	return "Authentication-Results: " + c.cfg.Hostname + ";\r\n\t" + strings.Join(parts, ";\r\n\t") + "\r\n"
}

// reason is a reasonspec (RFC 8601 2.2) for err, when show is set.
func reason(show bool, err error) string {
	if !show || err == nil {
		return ""
	}
	return " reason=" + quote(err.Error())
}

// quote makes a quoted-string of s: printable ASCII, short.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	n := 0
	for _, r := range s {
		if n >= 100 {
			b.WriteString("...")
			break
		}
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= ' ' && r < 0x7f:
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
		n++
	}
	b.WriteByte('"')
	return b.String()
}

// pvalue writes a property value (RFC 8601 2.2): as it is when it is a
// token (RFC 2045) or a dot-atom address, quoted otherwise.
func pvalue(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-^_`{|}~.@", r)) {
			return quote(s)
		}
	}
	return s
}
