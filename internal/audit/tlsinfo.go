package audit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// fillTLS records what was negotiated and adds findings about it.
func fillTLS(r *Report, st tls.ConnectionState, now time.Time) {
	r.TLS.Version = tlsVersionName(st.Version)
	r.TLS.Cipher = tls.CipherSuiteName(st.CipherSuite)
	if len(st.PeerCertificates) == 0 {
		return
	}
	cert := st.PeerCertificates[0]
	r.TLS.CertSubject = cert.Subject.String()
	r.TLS.CertIssuer = cert.Issuer.String()
	r.TLS.CertNames = append([]string{}, cert.DNSNames...)
	r.TLS.Expires = cert.NotAfter.UTC().Format(time.RFC3339)
	r.TLS.SelfSigned = isSelfSigned(cert)
	r.TLS.Expired = now.After(cert.NotAfter)

	if st.Version < tls.VersionTLS12 {
		r.add(Finding{ID: "tls-old-version", Severity: Medium,
			Title:    "The server negotiates " + r.TLS.Version + ", which is deprecated (RFC 8996)",
			Evidence: []string{"negotiated " + r.TLS.Version + " " + r.TLS.Cipher},
			Fix:      "Allow only TLS 1.2 and 1.3."})
	}
	if r.TLS.Expired {
		r.add(Finding{ID: "tls-cert-expired", Severity: Medium,
			Title:    "The TLS certificate has expired",
			Evidence: []string{"subject " + r.TLS.CertSubject, "not after " + r.TLS.Expires},
			Fix:      "Renew the certificate (for example with an ACME client) and reload the server."})
	} else if cert.NotAfter.Sub(now) < 14*24*time.Hour {
		r.add(Finding{ID: "tls-cert-expiring", Severity: Low,
			Title:    "The TLS certificate expires within 14 days",
			Evidence: []string{"subject " + r.TLS.CertSubject, "not after " + r.TLS.Expires},
			Fix:      "Renew the certificate and automate renewal."})
	}
	if r.TLS.SelfSigned {
		r.add(Finding{ID: "tls-cert-self-signed", Severity: Low,
			Title:    "The TLS certificate is self-signed",
			Evidence: []string{"subject " + r.TLS.CertSubject, "issuer " + r.TLS.CertIssuer},
			Fix:      "Use a certificate from a public CA so that clients and MTA-STS/DANE-validating peers can verify it."})
	}
}

// isSelfSigned reports whether the certificate signs itself.
func isSelfSigned(cert *x509.Certificate) bool {
	if cert.Subject.String() != cert.Issuer.String() {
		return false
	}
	return cert.CheckSignatureFrom(cert) == nil || len(cert.AuthorityKeyId) == 0 ||
		string(cert.AuthorityKeyId) == string(cert.SubjectKeyId)
}

// tlsVersionName writes versions as the JSON contract shows: "TLS1.3".
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return strings.ReplaceAll(fmt.Sprintf("0x%04x", v), " ", "")
}
