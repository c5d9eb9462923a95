// Package audit looks at a mail server the way an attacker does: it grabs
// banners and capabilities, fingerprints the software, inspects STARTTLS,
// enumerates users over SMTP (VRFY, EXPN or RCPT, whichever gives reliable
// answers), detects catch-all domains, throttling, tarpits and greylisting,
// and checks for open relaying and STARTTLS command injection.
//
// It talks only to the one target it is given, within a bounded time and
// rate, and sends no message unless asked to (Options.RelayData), and then
// only to Options.RelayTo. The result is a Report, which renders as text or
// as the stable JSON document described in DESIGN.md.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Severity ranks a finding.
type Severity string

// The severities, lowest first.
const (
	Info   Severity = "info"
	Low    Severity = "low"
	Medium Severity = "medium"
	High   Severity = "high"
)

// Rank orders severities: info 0 .. high 3; an unknown one is -1.
func (s Severity) Rank() int {
	switch s {
	case Info:
		return 0
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	}
	return -1
}

// ParseSeverity accepts info, low, medium or high.
func ParseSeverity(s string) (Severity, error) {
	v := Severity(strings.ToLower(s))
	if v.Rank() < 0 {
		return "", fmt.Errorf("unknown severity %q (want info, low, medium or high)", s)
	}
	return v, nil
}

// Finding is one thing the audit noticed, with the dialogue that shows it.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
	Evidence []string `json:"evidence"`
	Fix      string   `json:"fix"`
}

// TLSInfo describes the TLS a server negotiated (STARTTLS or implicit).
type TLSInfo struct {
	Offered     bool     `json:"offered"`
	Implicit    bool     `json:"implicit"`
	Version     string   `json:"version"`
	Cipher      string   `json:"cipher"`
	CertSubject string   `json:"cert_subject"`
	CertIssuer  string   `json:"cert_issuer"`
	CertNames   []string `json:"cert_names"`
	SelfSigned  bool     `json:"self_signed"`
	Expires     string   `json:"expires"`
	Expired     bool     `json:"expired"`
	Error       string   `json:"error,omitempty"`
}

// UsersResult is the outcome of user enumeration.
type UsersResult struct {
	// Method is the method used: vrfy, expn or rcpt; "none" when no method
	// gives reliable answers; "" when enumeration was not asked for.
	Method string   `json:"method"`
	Tried  int      `json:"tried"`
	Valid  []string `json:"valid"`
	// Inconclusive lists guesses that got no usable answer (4xx, timeout).
	Inconclusive []string `json:"inconclusive"`
	CatchAll     bool     `json:"catch_all"`
	Throttled    bool     `json:"throttled"`
	Tarpit       bool     `json:"tarpit"`
	Greylisted   bool     `json:"greylisted"`
	Reconnects   int      `json:"reconnects"`
	// Expanded lists, for EXPN, the members a valid name expands to (a
	// mailing list or alias), when they differ from the name.
	Expanded map[string][]string `json:"expanded"`
	// Methods says, per method probed, whether it tells users apart.
	Methods  map[string]string `json:"methods"`
	Complete bool              `json:"complete"`
}

// RelayResult is the outcome of the open-relay check.
type RelayResult struct {
	Tested   int      `json:"tested"`
	Open     bool     `json:"open"`
	Accepted []string `json:"accepted"`
	// DataAccepted lists the variants whose test message was accepted
	// after DATA (only with Options.RelayData).
	DataAccepted []string `json:"data_accepted"`
	To           string   `json:"to"`
}

// SmugglingResult is the outcome of the SMTP smuggling check.
type SmugglingResult struct {
	Tested            bool     `json:"tested"`
	AcceptedSequences []string `json:"accepted_sequences"`
}

// Report is everything one audit found. Its JSON form is a stable
// contract: fields may be added, never renamed.
type Report struct {
	Target   string `json:"target"`   // host:port as given
	Protocol string `json:"protocol"` // smtp, imap or pop3
	// Banner is the greeting; a multi-line one is joined with " / ".
	Banner string `json:"banner"`
	// Software and Version are what the banner, EHLO, ID or
	// IMPLEMENTATION give away ("Postfix", "Exim" "4.96"); "go-smtp" is
	// a guess from that library's default greeting.
	Software string `json:"software"`
	Version  string `json:"version"`
	// Hostname is the name the SMTP greeting gives.
	Hostname string `json:"hostname"`
	// Extensions are the EHLO keywords (SMTP) or capabilities (IMAP
	// CAPABILITY, POP3 CAPA) before TLS, or on the implicit-TLS connection.
	Extensions []string `json:"extensions"`
	// ExtensionsAfterTLS is the same list after STARTTLS.
	ExtensionsAfterTLS []string `json:"extensions_after_tls"`
	// AuthBeforeTLS and AuthAfterTLS are the ways to send a password:
	// SASL mechanisms, plus LOGIN-COMMAND (IMAP LOGIN not disabled) and
	// USER (POP3).
	AuthBeforeTLS []string `json:"auth_before_tls"`
	AuthAfterTLS  []string `json:"auth_after_tls"`
	// Implementation is what the server says about itself when asked
	// (IMAP ID, POP3 IMPLEMENTATION).
	Implementation string  `json:"implementation"`
	TLS            TLSInfo `json:"tls"`
	// VRFY and EXPN are how the verbs treat a name that cannot exist:
	// "disabled", "non-committal" (252), "reveals users", "accepts any
	// name", "refused", "temporary failure" (SMTP only).
	VRFY      string          `json:"vrfy"`
	EXPN      string          `json:"expn"`
	Users     UsersResult     `json:"users"`
	Relay     RelayResult     `json:"relay"`
	Smuggling SmugglingResult `json:"smuggling"`
	// Findings are sorted, most severe first.
	Findings []Finding `json:"findings"`
	// Errors are checks that could not be completed, in words.
	Errors []string `json:"errors"`
}

func newReport(target, protocol string) *Report {
	return &Report{
		Target: target, Protocol: protocol,
		Extensions: []string{}, ExtensionsAfterTLS: []string{}, AuthBeforeTLS: []string{}, AuthAfterTLS: []string{},
		TLS:       TLSInfo{CertNames: []string{}},
		Users:     UsersResult{Valid: []string{}, Inconclusive: []string{}, Expanded: map[string][]string{}, Methods: map[string]string{}},
		Relay:     RelayResult{Accepted: []string{}, DataAccepted: []string{}},
		Smuggling: SmugglingResult{AcceptedSequences: []string{}},
		Findings:  []Finding{}, Errors: []string{},
	}
}

func (r *Report) add(f Finding) {
	if f.Evidence == nil {
		f.Evidence = []string{}
	}
	r.Findings = append(r.Findings, f)
}

func (r *Report) errorf(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// Finding returns the finding with this id, or nil.
func (r *Report) Finding(id string) *Finding {
	for i := range r.Findings {
		if r.Findings[i].ID == id {
			return &r.Findings[i]
		}
	}
	return nil
}

// Worst is the highest severity found, or "" with no findings.
func (r *Report) Worst() Severity {
	var w Severity
	for _, f := range r.Findings {
		if f.Severity.Rank() > w.Rank() {
			w = f.Severity
		}
	}
	return w
}

// sortFindings puts the most severe first, keeping the discovery order
// within a severity.
func (r *Report) sortFindings() {
	sort.SliceStable(r.Findings, func(i, j int) bool {
		return r.Findings[i].Severity.Rank() > r.Findings[j].Severity.Rank()
	})
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteText writes a readable report: what the server is, then the
// findings grouped by severity, each with its evidence and a fix.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "postern audit %s %s\n\n", r.Protocol, r.Target)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %-15s %s\n", k+":", v)
		}
	}
	kv("banner", r.Banner)
	sw := r.Software
	if sw != "" && r.Version != "" {
		sw += " " + r.Version
	}
	kv("software", sw)
	kv("implementation", r.Implementation)
	if len(r.Extensions) > 0 {
		label := "extensions"
		if r.Protocol != "smtp" {
			label = "capabilities"
		}
		kv(label, strings.Join(r.Extensions, " "))
	}
	if len(r.AuthBeforeTLS) > 0 {
		kv("auth (plain)", strings.Join(r.AuthBeforeTLS, " "))
	}
	if len(r.AuthAfterTLS) > 0 {
		kv("auth (TLS)", strings.Join(r.AuthAfterTLS, " "))
	}
	switch {
	case r.TLS.Version != "":
		how := "STARTTLS"
		if r.TLS.Implicit {
			how = "implicit TLS"
		}
		kv("tls", fmt.Sprintf("%s %s %s", how, r.TLS.Version, r.TLS.Cipher))
		cert := r.TLS.CertSubject
		if r.TLS.SelfSigned {
			cert += " (self-signed)"
		}
		kv("certificate", cert+", expires "+r.TLS.Expires)
	case r.TLS.Offered:
		kv("tls", "offered, handshake failed: "+r.TLS.Error)
	default:
		kv("tls", "not offered")
	}
	kv("vrfy", r.VRFY)
	kv("expn", r.EXPN)
	if r.Users.Method != "" {
		u := r.Users
		fmt.Fprintf(&b, "  %-15s method %s, %d tried, %d valid", "users:", u.Method, u.Tried, len(u.Valid))
		for _, flag := range []struct {
			on   bool
			name string
		}{{u.CatchAll, "catch-all"}, {u.Throttled, "throttled"}, {u.Tarpit, "tarpit"}, {u.Greylisted, "greylisted"}, {!u.Complete, "incomplete"}} {
			if flag.on {
				b.WriteString(", " + flag.name)
			}
		}
		b.WriteString("\n")
		for _, v := range u.Valid {
			if m := u.Expanded[v]; len(m) > 0 {
				v += " -> " + strings.Join(m, ", ")
			}
			fmt.Fprintf(&b, "  %-15s %s\n", "", v)
		}
		if len(u.Inconclusive) > 0 {
			fmt.Fprintf(&b, "  %-15s %d guesses got no usable answer\n", "", len(u.Inconclusive))
		}
	}
	if r.Relay.Tested > 0 {
		state := "closed"
		if r.Relay.Open {
			state = "OPEN"
		}
		fmt.Fprintf(&b, "  %-15s %s (%d of %d variants accepted, to %s)\n", "relay:", state, len(r.Relay.Accepted), r.Relay.Tested, r.Relay.To)
	}
	if r.Smuggling.Tested {
		state := "no end-of-data sequence but <CRLF>.<CRLF> accepted"
		if len(r.Smuggling.AcceptedSequences) > 0 {
			state = "ACCEPTS " + strings.Join(r.Smuggling.AcceptedSequences, " ")
		}
		kv("smuggling", state)
	}
	for _, e := range r.Errors {
		kv("error", e)
	}
	b.WriteString("\n")
	if len(r.Findings) == 0 {
		b.WriteString("No findings.\n")
	}
	for _, sev := range []Severity{High, Medium, Low, Info} {
		var fs []Finding
		for _, f := range r.Findings {
			if f.Severity == sev {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s (%d)\n", strings.ToUpper(string(sev)), len(fs))
		for _, f := range fs {
			fmt.Fprintf(&b, "  [%s] %s\n", f.ID, f.Title)
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "      | %s\n", e)
			}
			if f.Fix != "" {
				fmt.Fprintf(&b, "      fix: %s\n", f.Fix)
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
