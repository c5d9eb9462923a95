package imapd

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// envelopeOf builds the ENVELOPE (RFC 9051 7.5.2) from our own parse of
// the header: the subject and display names as sent (encoded words are not
// decoded), group syntax kept as group start and end markers, and
// addresses without a domain kept, as Dovecot does, with MISSING_DOMAIN.
// (go-imap's ExtractEnvelope decodes subjects and drops groups and
// addresses without "@".)
func envelopeOf(raw []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil && h.Len() == 0 {
		return &imap.Envelope{}
	}
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	env := &imap.Envelope{
		Subject: unfold(h.Get("Subject")),
		From:    parseAddressList(unfold(h.Get("From"))),
		Sender:  parseAddressList(unfold(h.Get("Sender"))),
		ReplyTo: parseAddressList(unfold(h.Get("Reply-To"))),
		To:      parseAddressList(unfold(h.Get("To"))),
		Cc:      parseAddressList(unfold(h.Get("Cc"))),
		Bcc:     parseAddressList(unfold(h.Get("Bcc"))),
	}
	env.Date, _ = mh.Date()
	if ids, err := mh.MsgIDList("In-Reply-To"); err == nil {
		env.InReplyTo = ids
	}
	if id := strings.TrimSpace(unfold(h.Get("Message-Id"))); id != "" {
		env.MessageID = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	}
	return env
}

func unfold(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "")
	return strings.TrimSpace(strings.ReplaceAll(s, "\n", ""))
}

// addrParser reads an RFC 5322 3.4 address-list loosely: whatever can be
// recognised is kept, in order.
type addrParser struct {
	s       string
	i       int
	comment string // the last comment skipped: the name of "addr (Name)"
}

func parseAddressList(s string) []imap.Address {
	if s == "" {
		return nil
	}
	p := &addrParser{s: s}
	var out []imap.Address
	inGroup := false
	for {
		p.skipCFWS()
		if p.i >= len(p.s) {
			break
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			continue
		case ';':
			p.i++
			if inGroup {
				out = append(out, imap.Address{}) // end of group
				inGroup = false
			}
			continue
		}
		start := p.i
		p.comment = ""
		words, spec := p.words()
		p.skipCFWS()
		if p.i >= len(p.s) {
			if spec != "" {
				out = append(out, mailboxAddr(p.comment, spec))
			}
			break
		}
		switch p.s[p.i] {
		case ':':
			p.i++
			if inGroup { // nested groups are not allowed: treat as text
				continue
			}
			out = append(out, imap.Address{Mailbox: strings.Join(words, " ")})
			inGroup = true
		case '<':
			p.i++
			var addr string
			for {
				_, addr = p.words()
				if p.i < len(p.s) && (p.s[p.i] == ':' || p.s[p.i] == ',') {
					p.i++ // an obsolete route ("@a,@b:") comes before the address
					continue
				}
				break
			}
			if p.i < len(p.s) && p.s[p.i] == '>' {
				p.i++
			}
			out = append(out, mailboxAddr(strings.Join(words, " "), addr))
		default: // ',' or ';' or a stray special
			if spec != "" {
				out = append(out, mailboxAddr(p.comment, spec))
			}
			if p.i == start {
				p.i++ // skip a character nothing could use
			}
		}
	}
	if inGroup {
		out = append(out, imap.Address{})
	}
	return out
}

func mailboxAddr(name, spec string) imap.Address {
	a := imap.Address{Name: name}
	if k := strings.LastIndexByte(spec, '@'); k >= 0 {
		a.Mailbox, a.Host = spec[:k], spec[k+1:]
	} else {
		a.Mailbox = spec
	}
	if a.Mailbox == "" {
		a.Mailbox = "MISSING_MAILBOX"
	}
	if a.Host == "" {
		a.Host = "MISSING_DOMAIN"
	}
	return a
}

// skipCFWS skips white space and comments (which never count for
// addresses, RFC 5322 3.2.2).
func (p *addrParser) skipCFWS() {
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			p.i++
		case c == '(':
			depth := 0
			start := p.i
			for p.i < len(p.s) {
				switch p.s[p.i] {
				case '\\':
					p.i++
				case '(':
					depth++
				case ')':
					depth--
				}
				p.i++
				if depth == 0 {
					break
				}
			}
			p.comment = strings.TrimSpace(strings.Trim(p.s[start:p.i], "()"))
		default:
			return
		}
	}
}

// words reads a phrase or an addr-spec up to a special: the phrase's
// words (quoted strings unquoted) and the text as an addr-spec (without
// white space and comments).
func (p *addrParser) words() ([]string, string) {
	var words []string
	var spec strings.Builder
	for {
		p.skipCFWS()
		if p.i >= len(p.s) {
			return words, spec.String()
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			var w strings.Builder
			spec.WriteByte('"')
			p.i++
			for p.i < len(p.s) && p.s[p.i] != '"' {
				if p.s[p.i] == '\\' && p.i+1 < len(p.s) {
					spec.WriteByte('\\')
					p.i++
				}
				w.WriteByte(p.s[p.i])
				spec.WriteByte(p.s[p.i])
				p.i++
			}
			p.i++
			spec.WriteByte('"')
			words = append(words, w.String())
		case c == '<' || c == '>' || c == ':' || c == ',' || c == ';':
			return words, spec.String()
		case c == '.' || c == '@':
			spec.WriteByte(c)
			p.i++
			if c == '.' && len(words) > 0 {
				words[len(words)-1] += "."
			}
		case c == '[':
			end := strings.IndexByte(p.s[p.i:], ']')
			if end < 0 {
				end = len(p.s) - p.i - 1
			}
			spec.WriteString(p.s[p.i : p.i+end+1])
			p.i += end + 1
		default:
			j := p.i
			for j < len(p.s) && !strings.ContainsRune(" \t\r\n()<>:,;\".@[", rune(p.s[j])) {
				j++
			}
			if j == p.i {
				j++
			}
			words = append(words, p.s[p.i:j])
			spec.WriteString(p.s[p.i:j])
			p.i = j
		}
	}
}
