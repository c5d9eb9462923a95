package smtpd

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-smtp"
)

// checkFrom applies the From: policy to a message's header section; nil
// means accept.
//
// On the MX (mx true) a message must not have several From: fields or a
// From: field with several addresses: RFC 5322 3.6 allows one field, and
// DMARC (RFC 7489 6.6.1) cannot pick the domain to evaluate when there are
// several, so receivers "typically reject" them; Gmail answers 550 5.7.1,
// as we do. A message without From: is accepted, as Postfix and mox do
// (mox evaluates DMARC as "none" then): it is forbidden by RFC 5322, but
// scripts and old MUAs still send it and rejecting it would lose mail.
//
// On submission the author is authenticated, so RFC 5322 decides: one From:
// field at most, and one with several addresses needs a Sender: field
// holding exactly one (RFC 5322 3.6.2); otherwise 550 5.6.0.
//
// A From: field we cannot parse is left to the Checker (DMARC) and the
// recipient's MUA: this check refuses only what it can show is wrong.
func checkFrom(hdr []byte, mx bool) *smtp.SMTPError {
	froms := headerValues(hdr, "From")
	if len(froms) == 0 {
		return nil
	}
	code, ec := 550, smtp.EnhancedCode{5, 6, 0}
	if mx {
		ec = smtp.EnhancedCode{5, 7, 1}
	}
	if len(froms) > 1 {
		return smtpErr(code, ec, fmt.Sprintf("Message has %d From: header fields; exactly one is allowed (RFC 5322 3.6)", len(froms)))
	}
	n, ok := countAddresses(froms[0])
	if !ok || n <= 1 {
		return nil
	}
	if mx {
		return smtpErr(code, ec, fmt.Sprintf("From: header field has %d addresses; only one is accepted (RFC 7489 6.6.1)", n))
	}
	senders := headerValues(hdr, "Sender")
	if len(senders) == 1 {
		if m, ok := countAddresses(senders[0]); ok && m == 1 {
			return nil
		}
	}
	return smtpErr(code, ec, fmt.Sprintf("From: header field has %d addresses and needs a Sender: field with one (RFC 5322 3.6.2)", n))
}

// headerValues returns the unfolded values of every field called name
// (case-insensitive) in a header section with CRLF line ends.
func headerValues(hdr []byte, name string) []string {
	var out []string
	cur := -1 // index in out of the field being continued, or -1
	for _, line := range bytes.Split(hdr, []byte("\r\n")) {
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur >= 0 {
				out[cur] += string(line)
			}
			continue
		}
		cur = -1
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		// RFC 5322 4.5.6 (obsolete syntax): white space before the colon.
		if strings.EqualFold(strings.TrimRight(string(line[:colon]), " \t"), name) {
			out = append(out, string(line[colon+1:]))
			cur = len(out) - 1
		}
	}
	return out
}

// fromParser reads address lists whatever the charset of encoded words
// in display names: only the number of addresses matters here.
var fromParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// countAddresses counts the mailboxes in an address-list field value
// (groups flattened). A value net/mail cannot parse is split at the commas
// outside quotes, comments and angle brackets, and the parts holding an
// "@" are counted, so that one malformed address does not hide a second;
// ok is false when that finds no address either.
func countAddresses(v string) (n int, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, true
	}
	if list, err := fromParser.ParseList(v); err == nil {
		return len(list), true
	}
	for _, part := range splitTopLevel(v) {
		if strings.Contains(part, "@") {
			n++
		}
	}
	return n, n > 0
}

// splitTopLevel splits an address list at commas that are not inside a
// quoted string, a comment or angle brackets.
func splitTopLevel(v string) []string {
	var parts []string
	quoted, escaped := false, false
	depth, angle, start := 0, 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && angle == 0:
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	return append(parts, v[start:])
}
