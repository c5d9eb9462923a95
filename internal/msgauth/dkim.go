package msgauth

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// maxSignatures bounds how many DKIM signatures of a message are verified.
const maxSignatures = 8

// DKIMResult is the verification of one DKIM-Signature field (RFC 6376 6).
type DKIMResult struct {
	Result    string // pass, fail, temperror or permerror (RFC 8601 2.7.1)
	Domain    string // d=
	Selector  string // s=
	Algorithm string // a=
	B         string // the first characters of b= (RFC 6008)
	Err       error
}

// readErrReader remembers an error of the underlying reader, to tell a
// failed transfer from a message go-msgauth cannot parse.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// verifyDKIM verifies every signature (up to maxSignatures) of the message
// read from r. It fails only when r does.
func (c *Checker) verifyDKIM(ctx context.Context, r io.Reader) ([]*dkim.Verification, error) {
	rr := &readErrReader{r: r}
	verifs, err := dkim.VerifyWithOptions(rr, &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			// Each key lookup gets its own time: it starts when the
			// header has arrived, however long the body then takes.
			ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			defer cancel()
			return txtLookup(ctx, c.cfg.Resolver)(name)
		},
		MaxVerifications: maxSignatures,
	})
	if rr.err != nil {
		return nil, rr.err
	}
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// A header section go-msgauth cannot parse: no verifiable signature.
		return nil, nil
	}
	return verifs, nil
}

// annotateDKIM turns go-msgauth's verifications into results, taking the
// selector, algorithm and b= from the signature fields (same order).
func annotateDKIM(verifs []*dkim.Verification, sigs []string) []DKIMResult {
	var out []DKIMResult
	for i, v := range verifs {
		r := DKIMResult{Domain: strings.ToLower(v.Domain), Err: v.Err}
		switch {
		case v.Err == nil:
			r.Result = "pass"
		case dkim.IsTempFail(v.Err):
			r.Result = "temperror"
		case dkim.IsPermFail(v.Err):
			r.Result = "permerror"
		default:
			r.Result = "fail"
		}
		if i < len(sigs) {
			tags := parseTags(sigs[i])
			r.Selector, r.Algorithm = tags["s"], tags["a"]
			if b := tags["b"]; len(b) > 8 {
				r.B = b[:8]
			} else {
				r.B = b
			}
		}
		out = append(out, r)
	}
	return out
}

// parseTags parses a tag=value list (RFC 6376 3.2), removing whitespace
// from the values.
func parseTags(s string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		m[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
	}
	return m
}
