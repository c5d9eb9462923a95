package e2e

import (
	"fmt"
	"net/mail"
	"strings"
)

// mboxMessage is one message of an mboxrd export.
type mboxMessage struct {
	FromLine string      // the "From sender date" separator line
	Header   mail.Header // parsed header section
	Raw      string      // header and body as exported (LF line ends, unquoted)
	Body     string      // text after the first empty line
}

// parseMboxrd splits an mboxrd stream as `postern mailbox export` writes it:
// each message starts with a "From " line at the start of the stream or
// after an empty line and is followed by one empty line; body lines that
// matched ^>*From were given one more '>', which is removed here.
func parseMboxrd(s string) ([]mboxMessage, error) {
	if s == "" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "From ") {
		return nil, fmt.Errorf("mbox does not start with a From line: %.60q", s)
	}
	if !strings.HasSuffix(s, "\n\n") {
		return nil, fmt.Errorf("mbox does not end with an empty line: ...%q", s[max(0, len(s)-60):])
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	var msgs []mboxMessage
	var cur []string
	var fromLine string
	flush := func() error {
		// The separator's empty line belongs to the mbox, not the message.
		if len(cur) == 0 || cur[len(cur)-1] != "" {
			return fmt.Errorf("message after %q does not end with an empty line", fromLine)
		}
		raw := strings.Join(cur[:len(cur)-1], "\n") + "\n"
		m, err := mail.ReadMessage(strings.NewReader(raw))
		if err != nil {
			return fmt.Errorf("message after %q: %v", fromLine, err)
		}
		body := ""
		if i := strings.Index(raw, "\n\n"); i >= 0 {
			body = raw[i+2:]
		}
		msgs = append(msgs, mboxMessage{FromLine: fromLine, Header: m.Header, Raw: raw, Body: body})
		return nil
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "From ") && (i == 0 || lines[i-1] == "") {
			if i > 0 {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			fromLine, cur = l, nil
			continue
		}
		cur = append(cur, unquoteFrom(l))
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return msgs, nil
}

func unquoteFrom(l string) string {
	t := strings.TrimLeft(l, ">")
	if len(t) < len(l) && strings.HasPrefix(t, "From ") {
		return l[1:]
	}
	return l
}

// bySubject returns the messages whose Subject is subject.
func bySubject(msgs []mboxMessage, subject string) []mboxMessage {
	var out []mboxMessage
	for _, m := range msgs {
		if m.Header.Get("Subject") == subject {
			out = append(out, m)
		}
	}
	return out
}
