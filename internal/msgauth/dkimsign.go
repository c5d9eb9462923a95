package msgauth

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"
)

// signWith DKIM-signs the message read from r with every key (RFC 6376 5,
// RFC 8463 for ed25519-sha256) and returns the DKIM-Signature fields, one
// per key, each CRLF-terminated. All keys use relaxed/relaxed and SHA-256,
// so the body is read, canonicalized and hashed once for all of them; only
// the header hash and the signature are per key.
func signWith(keys []Key, fields []string, r io.Reader, now time.Time) (string, error) {
	if len(keys) == 0 {
		return "", errors.New("dkim: no keys")
	}
	br := bufio.NewReaderSize(r, 16<<10)
	header, err := readFields(br)
	if err != nil {
		return "", fmt.Errorf("dkim: reading the header: %w", err)
	}
	bh := sha256.New()
	body := &relaxedBody{h: bh}
	if _, err := br.WriteTo(body); err != nil {
		return "", fmt.Errorf("dkim: reading the body: %w", err)
	}
	body.close()
	bodyHash := base64.StdEncoding.EncodeToString(bh.Sum(nil))

	// The signed header fields, canonicalized (RFC 6376 3.4.2), picked
	// bottom-up (5.4.2); a name listed more often than it occurs (the
	// oversigned From) adds nothing.
	var signed strings.Builder
	used := map[string]int{}
	for _, name := range fields {
		lname := strings.ToLower(name)
		seen := 0
		for i := len(header) - 1; i >= 0; i-- {
			if !strings.EqualFold(fieldName(header[i]), lname) {
				continue
			}
			if seen == used[lname] {
				signed.WriteString(relaxedHeader(header[i]))
				break
			}
			seen++
		}
		used[lname]++
	}

	var out strings.Builder
	for _, k := range keys {
		alg := k.Algorithm()
		field := "DKIM-Signature: v=1; a=" + alg + "-sha256; c=relaxed/relaxed;\r\n" +
			"\td=" + k.Domain + "; s=" + k.Selector + "; t=" + strconv.FormatInt(now.Unix(), 10) + ";\r\n" +
			"\th=" + foldList(fields, ":", "\r\n\t  ") + ";\r\n" +
			"\tbh=" + bodyHash + ";\r\n" +
			"\tb="
		h := sha256.New()
		io.WriteString(h, signed.String())
		// The signature field itself, b= empty, without its final CRLF
		// (RFC 6376 3.7).
		io.WriteString(h, strings.TrimSuffix(relaxedHeader(field), "\r\n"))
		digest := h.Sum(nil)
		opts := crypto.SignerOpts(crypto.SHA256)
		if alg == "ed25519" {
			opts = crypto.Hash(0) // Ed25519 signs the SHA-256 digest itself (RFC 8463 3)
		}
		sig, err := k.Signer.Sign(rand.Reader, digest, opts)
		if err != nil {
			return "", fmt.Errorf("dkim: signing with %s: %w", k.Name(), err)
		}
		out.WriteString(field)
		out.WriteString(fold(base64.StdEncoding.EncodeToString(sig), 72, "\r\n\t  "))
		out.WriteString("\r\n")
	}
	return out.String(), nil
}

// readFields reads the header section: its fields, each with its folded
// lines and their CRLFs (a bare LF counts as a line end). It stops after
// the empty line, or at the end of a message without a body.
func readFields(br *bufio.Reader) ([]string, error) {
	var fields []string
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		text := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if text == "" {
			return fields, nil
		}
		text += "\r\n"
		if len(fields) > 0 && (text[0] == ' ' || text[0] == '\t') {
			fields[len(fields)-1] += text
		} else {
			fields = append(fields, text)
		}
		if err == io.EOF {
			return fields, nil
		}
	}
}

func fieldName(field string) string {
	name, _, _ := strings.Cut(field, ":")
	return strings.TrimRight(name, " \t")
}

// relaxedHeader canonicalizes one header field (RFC 6376 3.4.2): the name
// in lower case, the value unfolded, runs of whitespace made one space,
// none around the colon or at the end, then CRLF.
func relaxedHeader(field string) string {
	name, value, _ := strings.Cut(field, ":")
	name = strings.ToLower(strings.TrimRight(name, " \t"))
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), " ")
	return name + ":" + value + "\r\n"
}

// relaxedBody hashes a body canonicalized as RFC 6376 3.4.4 says: trailing
// whitespace of each line removed, runs of whitespace made one space, empty
// lines at the end removed, a non-empty body ending in CRLF. A bare CR or
// LF counts as a line end, as the courier sends it.
type relaxedBody struct {
	h       hash.Hash
	buf     [4096]byte
	n       int
	wsp     bool // whitespace seen and not yet written
	lines   int  // line ends seen and not yet written
	cr      bool // the last byte was CR
	written bool
}

func (b *relaxedBody) Write(p []byte) (int, error) {
	for _, c := range p {
		switch c {
		case ' ', '\t':
			b.wsp = true
		case '\r':
			b.wsp = false
			b.lines++
		case '\n':
			b.wsp = false
			if !b.cr {
				b.lines++
			}
		default:
			for ; b.lines > 0; b.lines-- {
				b.put('\r')
				b.put('\n')
			}
			if b.wsp {
				b.put(' ')
				b.wsp = false
			}
			b.put(c)
			b.written = true
		}
		b.cr = c == '\r'
	}
	return len(p), nil
}

func (b *relaxedBody) put(c byte) {
	if b.n == len(b.buf) {
		b.h.Write(b.buf[:b.n])
		b.n = 0
	}
	b.buf[b.n] = c
	b.n++
}

// close ends the body: one CRLF after its last non-empty line.
func (b *relaxedBody) close() {
	if b.written {
		b.put('\r')
		b.put('\n')
	}
	b.h.Write(b.buf[:b.n])
	b.n = 0
}

// foldList joins items with sep, starting a new line (with indent) before
// an item that would make the line longer than 70 characters.
func foldList(items []string, sep, indent string) string {
	var out strings.Builder
	line := 0
	for i, it := range items {
		if i > 0 {
			out.WriteString(sep)
			line += len(sep)
			if line+len(it) > 70 {
				out.WriteString(indent)
				line = len(indent) - 2
			}
		}
		out.WriteString(it)
		line += len(it)
	}
	return out.String()
}

// fold cuts s into lines of n characters joined by indent (whitespace in
// b= is ignored, RFC 6376 3.5).
func fold(s string, n int, indent string) string {
	var out strings.Builder
	for len(s) > n {
		out.WriteString(s[:n])
		out.WriteString(indent)
		s = s[n:]
	}
	out.WriteString(s)
	return out.String()
}
