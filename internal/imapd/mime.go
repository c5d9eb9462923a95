package imapd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// part is one MIME entity of a message: its header and raw body.
type part struct {
	header textproto.Header
	body   []byte
	digest bool // a child of multipart/digest: default type message/rfc822 (RFC 2046 5.1.5)
}

func splitMessage(raw []byte) part {
	br := bufio.NewReader(bytes.NewReader(raw))
	h, _ := textproto.ReadHeader(br)
	body, _ := io.ReadAll(br)
	return part{header: h, body: body}
}

// mediaType returns the part's type with the RFC 2045 5.2 and RFC 2046
// 5.1.5 defaults.
func (p part) mediaType() (string, string, map[string]string) {
	h := gomessage.Header{Header: p.header}
	if h.Get("Content-Type") == "" {
		if p.digest {
			return "message", "rfc822", nil
		}
		return "text", "plain", map[string]string{"charset": "us-ascii"}
	}
	mt, params, err := h.ContentType()
	if err != nil || !strings.Contains(mt, "/") {
		return "text", "plain", map[string]string{"charset": "us-ascii"}
	}
	typ, sub, _ := strings.Cut(mt, "/")
	return typ, sub, params
}

func (p part) children() []part {
	typ, sub, params := p.mediaType()
	if typ != "multipart" {
		return nil
	}
	mr := textproto.NewMultipartReader(bytes.NewReader(p.body), params["boundary"])
	var out []part
	for {
		child, err := mr.NextPart()
		if err != nil {
			break
		}
		body, _ := io.ReadAll(child)
		out = append(out, part{header: child.Header, body: body, digest: sub == "digest"})
	}
	return out
}

func (p part) isMessage() bool {
	typ, sub, _ := p.mediaType()
	return typ == "message" && (sub == "rfc822" || sub == "global")
}

// find walks an IMAP section part path (RFC 9051 6.4.5): a number selects
// a child of a multipart; inside message/rfc822 it applies to the
// enclosed message; part 1 of a non-multipart is its body.
func (p part) find(path []int) (part, bool) {
	for _, n := range path {
		if p.isMessage() {
			p = splitMessage(p.body)
		}
		if kids := p.children(); kids != nil {
			if n < 1 || n > len(kids) {
				return part{}, false
			}
			p = kids[n-1]
		} else if n != 1 {
			return part{}, false
		}
	}
	return p, true
}

// bodyStructure builds BODYSTRUCTURE (RFC 9051 7.5.2) with the default
// types go-imap's ExtractBodyStructure leaves out and our own envelope for
// enclosed messages.
func (p part) bodyStructure() imap.BodyStructure {
	typ, sub, params := p.mediaType()
	h := gomessage.Header{Header: p.header}
	disp := getDisposition(h)
	lang := getLanguage(h)
	if typ == "multipart" {
		bs := &imap.BodyStructureMultiPart{Subtype: sub}
		for _, c := range p.children() {
			bs.Children = append(bs.Children, c.bodyStructure())
		}
		if len(bs.Children) == 0 { // RFC 9051 requires at least one part
			bs.Children = append(bs.Children, part{}.bodyStructure())
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{Params: params, Disposition: disp, Language: lang, Location: h.Get("Content-Location")}
		return bs
	}
	bs := &imap.BodyStructureSinglePart{
		Type: typ, Subtype: sub, Params: params,
		ID: h.Get("Content-Id"), Description: h.Get("Content-Description"),
		Encoding: h.Get("Content-Transfer-Encoding"), Size: uint32(len(p.body)),
	}
	lines := int64(bytes.Count(p.body, []byte("\n")))
	if p.isMessage() {
		inner := splitMessage(p.body)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      envelopeOf(p.body),
			BodyStructure: inner.bodyStructure(),
			NumLines:      lines,
		}
	} else if typ == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{Disposition: disp, Language: lang, Location: h.Get("Content-Location")}
	return bs
}

func getDisposition(h gomessage.Header) *imap.BodyStructureDisposition {
	d, params, _ := h.ContentDisposition()
	if d == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d, Params: params}
}

func getLanguage(h gomessage.Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i := range l {
		l[i] = strings.TrimSpace(l[i])
	}
	return l
}

// errUnknownCTE answers BINARY for a part whose encoding we cannot decode
// (RFC 3516 4.3).
var errUnknownCTE = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "UNKNOWN-CTE", Text: "Unknown Content-Transfer-Encoding"}

// binaryContent returns a part's content with its transfer encoding
// undone and nothing else changed (no charset conversion): BINARY[part]
// (RFC 3516). The whole message (empty path) is returned as is, header
// included.
func binaryContent(raw []byte, path []int) ([]byte, error) {
	if len(path) == 0 {
		return raw, nil
	}
	p, ok := splitMessage(raw).find(path)
	if !ok {
		return nil, nil
	}
	if typ, _, _ := p.mediaType(); typ == "multipart" {
		return p.body, nil
	}
	switch strings.ToLower(strings.TrimSpace(p.header.Get("Content-Transfer-Encoding"))) {
	case "", "7bit", "8bit", "binary":
		return p.body, nil
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, p.body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return out[:n], nil // keep what decoded, as Dovecot does
		}
		return out[:n], nil
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(p.body)))
		return out, nil
	}
	return nil, errUnknownCTE
}

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	end := int64(len(b))
	if p.Size >= 0 && p.Offset+p.Size < end {
		end = p.Offset + p.Size
	}
	return b[p.Offset:end]
}
