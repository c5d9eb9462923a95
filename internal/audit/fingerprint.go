package audit

import (
	"regexp"
	"strings"
)

// signature recognises one server software from what it says.
type signature struct {
	name string
	re   *regexp.Regexp // group 1, when present, is the version
}

// signatures are tried in order against banners, EHLO/CAPABILITY replies
// and ID/IMPLEMENTATION answers.
var signatures = []signature{
	{"Postfix", regexp.MustCompile(`(?i)\bPostfix(?:[ /(]+v?(\d+(?:\.\d+){1,3}))?`)},
	{"Exim", regexp.MustCompile(`(?i)\bExim(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"Sendmail", regexp.MustCompile(`(?i)\bSendmail(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"Microsoft Exchange", regexp.MustCompile(`(?i)Microsoft ESMTP MAIL Service|Microsoft Exchange(?: Server)?(?: (\d+))?`)},
	{"OpenSMTPD", regexp.MustCompile(`(?i)\bOpenSMTPD(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"Haraka", regexp.MustCompile(`(?i)\bHaraka(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"qmail", regexp.MustCompile(`(?i)\bqmail(?:[ /-]+(\d+(?:\.\d+){1,3}))?`)},
	{"Courier", regexp.MustCompile(`(?i)\bCourier(?:-IMAP|-MTA)?(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"hMailServer", regexp.MustCompile(`(?i)\bhMailServer(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"MDaemon", regexp.MustCompile(`(?i)\bMDaemon(?:[ /]+v?(\d+(?:\.\d+){1,3}))?`)},
	{"Zimbra", regexp.MustCompile(`(?i)\bZimbra(?:[ /]+(\d+(?:\.\d+){1,3}))?`)},
	{"Dovecot", regexp.MustCompile(`(?i)\bDovecot(?:[ /]+v?(\d+(?:\.\d+){1,3}))?`)},
	{"Cyrus", regexp.MustCompile(`(?i)\bCyrus(?: IMAP| POP3)?(?:[ /]+v?(\d+(?:\.\d+){1,3}))?`)},
	{"UW IMAP", regexp.MustCompile(`(?i)\bIMAP4rev1 (\d{4}\.\d+)`)},
	{"maddy", regexp.MustCompile(`(?i)\bmaddy(?:[ /]+v?(\d+(?:\.\d+){1,3}))?`)},
	{"chasquid", regexp.MustCompile(`(?i)\bchasquid(?:[ /]+v?(\d+(?:\.\d+){1,3}))?`)},
	{"mox", regexp.MustCompile(`(?i)\bmox(?:[ /]+v?(\d+(?:\.\d+){1,3}))\b`)},
	{"Postern", regexp.MustCompile(`(?i)\bPostern(?:[ /]+v?(\d+(?:\.\d+){1,3}))?`)},
	// go-smtp's default greeting, used by servers built on it (Postern,
	// maddy) unless they change it.
	{"go-smtp", regexp.MustCompile(`ESMTP Service Ready$`)},
}

// fingerprint returns the software and version found in text, if any.
// explicit is false for a guess from a library's default wording rather
// than a name the server states.
func fingerprint(text string) (name, version string, explicit bool) {
	for _, s := range signatures {
		m := s.re.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		if len(m) > 1 {
			version = m[1]
		}
		return s.name, version, s.name != "go-smtp"
	}
	return "", "", false
}

// bannerLeak adds a finding when a banner names the software or version.
func bannerLeak(r *Report, what, text string) {
	name, version, explicit := fingerprint(text)
	if name == "" {
		return
	}
	if r.Software == "" || (r.Version == "" && version != "") {
		r.Software, r.Version = name, version
	}
	if !explicit {
		return
	}
	ev := []string{"S: " + text}
	switch {
	case version != "":
		r.add(Finding{ID: what + "-version-leak", Severity: Medium,
			Title:    "The " + what + " reveals the server software and its version (" + name + " " + version + ")",
			Evidence: ev,
			Fix:      "Remove the software name and version from the " + what + "; attackers match versions to known vulnerabilities."})
	default:
		r.add(Finding{ID: what + "-software-leak", Severity: Low,
			Title:    "The " + what + " reveals the server software (" + name + ")",
			Evidence: ev,
			Fix:      "Remove the software name from the " + what + " (Postfix: smtpd_banner = $myhostname ESMTP; Dovecot: login_greeting)."})
	}
}

// hostnameFromGreeting returns the first word after the code of an SMTP
// greeting, the name the server calls itself.
func hostnameFromGreeting(line string) string {
	if len(line) < 4 {
		return ""
	}
	f := strings.Fields(line[4:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
