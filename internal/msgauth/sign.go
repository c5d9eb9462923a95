package msgauth

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"time"
)

// signedFields are the header fields signed when present. From is listed
// once more than it occurs (oversigned, RFC 6376 8.15) so that no second
// From can be added without breaking the signature.
var signedFields = []string{"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "List-Id", "List-Unsubscribe",
	"List-Unsubscribe-Post", "Sender", "Auto-Submitted"}

// Signer DKIM-signs the outbound mail of local domains.
type Signer struct {
	Keys *KeyStore
	// IsLocal reports whether mail of domain is signed here (a hosted
	// domain).
	IsLocal func(ctx context.Context, domain string) (bool, error)
	// Hostname is the name in our Received fields. A message whose first
	// field is our Received for an unauthenticated session came in on
	// the MX (an alias forwards it): it is never signed, whatever its
	// From says, or a forged From of a hosted domain would leave here
	// with a valid signature. Empty: no such check.
	Hostname string
	// Now is the signing time (t=); nil: time.Now.
	Now func() time.Time
}

func (s *Signer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Sign reads a message and returns the DKIM-Signature fields to put in
// front of it (CRLF-terminated, one per active key: ed25519-sha256 and
// rsa-sha256), or "" when no local domain sends it. The signing domain is
// the author's (From) domain or the nearest parent of it that is hosted
// here, for DMARC alignment; failing that, the envelope sender's.
func (s *Signer) Sign(ctx context.Context, mailFrom string, msg io.Reader) (string, error) {
	br := bufio.NewReaderSize(msg, 32<<10)
	hdr := &headerCapture{}
	var head bytes.Buffer
	for !hdr.done {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			head.Write(line)
			hdr.Write(line)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	if s.Hostname != "" && receivedUnauthenticated(head.Bytes(), s.Hostname) {
		return "", nil
	}
	var candidates []string
	if froms := hdr.fields("From"); len(froms) == 1 {
		if d, err := authorDomain(froms[0]); err == nil {
			candidates = append(candidates, parents(d)...)
		}
	}
	if at := strings.LastIndexByte(mailFrom, '@'); at >= 0 {
		candidates = append(candidates, parents(strings.ToLower(mailFrom[at+1:]))...)
	}
	domain := ""
	for _, d := range candidates {
		ok, err := s.IsLocal(ctx, d)
		if err != nil {
			return "", err
		}
		if ok {
			domain = d
			break
		}
	}
	if domain == "" {
		return "", nil
	}
	keys, err := s.Keys.Active(domain)
	if err != nil {
		return "", err
	}
	sigs, err := signWith(keys, fieldsToSign(hdr), io.MultiReader(&head, br), s.now())
	if err == nil {
		dkimSigned.Inc()
	}
	return sigs, err
}

// parents returns domain and its parents down to its organizational domain.
func parents(domain string) []string {
	org := OrgDomain(domain)
	out := []string{domain}
	for d := domain; d != org && strings.Contains(d, "."); {
		d = d[strings.IndexByte(d, '.')+1:]
		out = append(out, d)
	}
	return out
}

// fieldsToSign lists the signedFields present in hdr, each as often as it
// occurs, and From once more.
func fieldsToSign(hdr *headerCapture) []string {
	var keys []string
	for _, name := range signedFields {
		n := len(hdr.fields(name))
		for i := 0; i < n; i++ {
			keys = append(keys, name)
		}
	}
	return append(keys, "From")
}

// receivedUnauthenticated reports whether the first header field of hdr
// is a Received field that host added for a session without AUTH: its
// protocol is not ESMTPA or ESMTPSA (RFC 3848).
func receivedUnauthenticated(hdr []byte, host string) bool {
	// The first field, unfolded.
	end := 0
	for {
		i := bytes.Index(hdr[end:], []byte("\r\n"))
		if i < 0 {
			end = len(hdr)
			break
		}
		end += i + 2
		if end >= len(hdr) || (hdr[end] != ' ' && hdr[end] != '\t') {
			break
		}
	}
	field := strings.Join(strings.Fields(string(hdr[:end])), " ")
	name, value, ok := strings.Cut(field, ":")
	if !ok || !strings.EqualFold(name, "Received") {
		return false
	}
	_, rest, ok := strings.Cut(strings.ToLower(value), " by "+strings.ToLower(host)+" with ")
	if !ok {
		return false
	}
	proto, _, _ := strings.Cut(rest, " ")
	return proto != "esmtpa" && proto != "esmtpsa"
}

// Published reports whether every DKIM-Signature field in sigs (as Sign
// returned them) names a key this server still has for its domain, so
// that its public key is still in DNS (dns-records lists a key until
// dkim-rotate --retire deletes it). Signatures kept for a message's retries
// are reused only while they are published; after a retirement the
// message is signed anew, or receivers would find no key.
func (s *Signer) Published(sigs string) bool {
	unfolded := strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(sigs)
	for _, field := range strings.Split(unfolded, "\r\n") {
		name, value, ok := strings.Cut(field, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
			continue
		}
		tags := dkimTags(value)
		keys, err := s.Keys.Keys(tags["d"])
		if err != nil || tags["s"] == "" {
			return false
		}
		if !slices.ContainsFunc(keys, func(k Key) bool { return strings.EqualFold(k.Selector, tags["s"]) }) {
			return false
		}
	}
	return true
}

// dkimTags parses a DKIM-Signature value's tag=value list (whitespace,
// folding included, removed).
func dkimTags(v string) map[string]string {
	tags := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(val), "")
	}
	return tags
}
