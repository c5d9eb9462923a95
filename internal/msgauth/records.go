package msgauth

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Record is one DNS record a hosted domain should publish.
type Record struct {
	Comment     string
	Name        string // FQDN with the trailing dot
	Type        string // MX, TXT, SRV
	Value       string // TXT: the text; MX: "pref host."; SRV: "prio weight port target."
	Placeholder bool   // printed commented out, not checked
}

// ZoneTTL is the TTL written in front of every record.
const ZoneTTL = 3600

// Services gives the ports of the client services a domain's SRV records
// announce (RFC 6186, RFC 8314); 0: the service is not offered.
type Services struct {
	Submission, Submissions, IMAP, IMAPS, POP3, POP3S int
}

// Records lists the records domain needs when hostname is its mail
// server: mail routing, sender authentication (SPF for the domain and the
// HELO name, every DKIM key, DMARC), TLS reporting, an MTA-STS
// placeholder, and the client configuration SRV records.
func Records(domain, hostname string, keys []Key, svc Services, now time.Time) ([]Record, error) {
	d := domain + "."
	host := strings.TrimSuffix(hostname, ".") + "."
	recs := []Record{
		{Comment: "Mail for " + domain + " goes to this server (" + hostname + " needs A/AAAA records with its public addresses).",
			Name: d, Type: "MX", Value: "10 " + host},
		{Comment: "SPF (RFC 7208): only the MX hosts send mail as " + domain + "; others fail.",
			Name: d, Type: "TXT", Value: "v=spf1 mx -all"},
	}
	if h := strings.ToLower(strings.TrimSuffix(hostname, ".")); strings.HasSuffix(h, "."+domain) {
		recs = append(recs, Record{Comment: "SPF for the HELO name (RFC 7208 2.3): " + hostname + " sends as itself.",
			Name: host, Type: "TXT", Value: "v=spf1 a -all"})
	}
	for _, k := range keys {
		txt, err := k.Record()
		if err != nil {
			return nil, err
		}
		state := "signs outgoing mail"
		if !k.Active {
			state = "retired from signing; keep it until `postern domain dkim-rotate " + domain + " --retire`"
		}
		recs = append(recs, Record{Comment: fmt.Sprintf("DKIM key %s (%s-sha256): %s.", k.Selector, k.Algorithm(), state),
			Name: k.Name() + ".", Type: "TXT", Value: txt})
	}
	recs = append(recs,
		Record{Comment: "DMARC (RFC 7489): quarantine mail that fails SPF and DKIM alignment; aggregate reports to postmaster.",
			Name: "_dmarc." + d, Type: "TXT", Value: "v=DMARC1; p=quarantine; rua=mailto:postmaster@" + domain},
		Record{Comment: "TLS-RPT (RFC 8460): where senders report TLS failures; change the address if you like.",
			Name: "_smtp._tls." + d, Type: "TXT", Value: "v=TLSRPTv1; rua=mailto:postmaster@" + domain},
		Record{Comment: "MTA-STS (RFC 8461), placeholder: publish only once https://mta-sts." + domain + "/.well-known/mta-sts.txt serves a policy.",
			Name: "_mta-sts." + d, Type: "TXT", Value: "v=STSv1; id=" + now.UTC().Format("20060102"), Placeholder: true},
	)
	for _, s := range []struct {
		service, what string
		port          int
	}{
		{"_submission._tcp", "mail submission with STARTTLS", svc.Submission},
		{"_submissions._tcp", "mail submission with implicit TLS (RFC 8314)", svc.Submissions},
		{"_imap._tcp", "IMAP with STARTTLS", svc.IMAP},
		{"_imaps._tcp", "IMAP with implicit TLS", svc.IMAPS},
		{"_pop3._tcp", "POP3 with STLS", svc.POP3},
		{"_pop3s._tcp", "POP3 with implicit TLS", svc.POP3S},
	} {
		port := s.port
		value := "0 1 " + strconv.Itoa(port) + " " + host
		comment := "Client autoconfiguration (RFC 6186): " + s.what + "."
		if port == 0 {
			value = "0 0 0 ." // RFC 6186 4: the service is not offered
			comment = "Client autoconfiguration (RFC 6186): no " + s.what + " here."
		}
		recs = append(recs, Record{Comment: comment, Name: s.service + "." + d, Type: "SRV", Value: value})
	}
	return recs, nil
}

// ZoneValue writes a record's data in zone-file syntax: TXT text in
// quoted strings of at most 255 bytes.
func (r Record) ZoneValue() string {
	if r.Type != "TXT" {
		return r.Value
	}
	var parts []string
	for v := r.Value; ; v = v[255:] {
		if len(v) <= 255 {
			parts = append(parts, strconv.Quote(v))
			break
		}
		parts = append(parts, strconv.Quote(v[:255]))
	}
	return strings.Join(parts, " ")
}

// Zone is the record as a zone-file line (commented out for a
// placeholder).
func (r Record) Zone() string {
	line := fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, ZoneTTL, r.Type, r.ZoneValue())
	if r.Placeholder {
		line = "; " + line
	}
	return line
}
