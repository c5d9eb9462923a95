package smtp

import (
	"fmt"
	"strings"
)

// Postern patch: command lines holding CR, LF or NUL.
//
// A command line ends at LF; the CRLF before it is not part of the line,
// but a CR or NUL inside it reaches the parser, which would take it into
// the EHLO name, an address (and from there into Received: and
// Return-Path: fields, and logs) or an ESMTP parameter, and go-smtp's
// strings.TrimSpace and strings.Fields would silently drop or split on a
// CR. RFC 5321 4.1.2 allows none of them in any of these, so such a line
// is refused with 501 as a whole and the connection goes on.

// lineCtlChar names the first CR, LF or NUL in s, or returns "".
func lineCtlChar(s string) string {
	i := strings.IndexAny(s, "\r\n\x00")
	if i < 0 {
		return ""
	}
	return ctlName(s[i])
}

func ctlName(b byte) string {
	switch b {
	case '\r':
		return "CR"
	case '\n':
		return "LF"
	case 0:
		return "NUL"
	}
	return fmt.Sprintf("0x%02X", b)
}

// addrCtlChar names the first control character (C0 or DEL) in an address:
// the grammar of RFC 5321 4.1.2 allows none, quoted or not.
func addrCtlChar(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return ctlName(s[i])
		}
	}
	return ""
}

// ctlCharReply returns the reply for a command line holding CR, LF or NUL
// (ok false: the line has none). The enhanced code says which part is
// bad: 5.5.2 the command or the EHLO/HELO name, 5.1.7 the sender address,
// 5.1.3 a recipient address, 5.5.4 an ESMTP parameter (RFC 3463).
func ctlCharReply(line string) (code int, ec EnhancedCode, msg string, ok bool) {
	c := lineCtlChar(line)
	if c == "" {
		return 0, EnhancedCode{}, "", false
	}
	verb := line
	if len(verb) > 4 {
		verb = verb[:4]
	}
	verb = strings.ToUpper(verb)
	what := fmt.Sprintf("a %s character", c)
	switch verb {
	case "HELO", "EHLO", "LHLO":
		return 501, EnhancedCode{5, 5, 2}, fmt.Sprintf("%s argument contains %s", verb, what), true
	case "MAIL", "RCPT":
		prefix := "FROM:"
		addrEC, addrWhat := EnhancedCode{5, 1, 7}, "Sender address"
		if verb == "RCPT" {
			prefix = "TO:"
			addrEC, addrWhat = EnhancedCode{5, 1, 3}, "Recipient address"
		}
		arg := strings.TrimLeft(line[4:], " ")
		if rest, found := cutPrefixFold(arg, prefix); found {
			p := parser{s: strings.TrimLeft(rest, " ")}
			var addr string
			var err error
			if verb == "MAIL" {
				addr, err = p.parseReversePath()
			} else {
				addr, err = p.parsePath()
			}
			if err == nil && addrCtlChar(addr) == "" {
				// The address is clean: the character is in the parameters.
				return 501, EnhancedCode{5, 5, 4}, fmt.Sprintf("%s parameters contain %s", verb, what), true
			}
			return 501, addrEC, fmt.Sprintf("%s contains %s", addrWhat, what), true
		}
	}
	return 501, EnhancedCode{5, 5, 2}, fmt.Sprintf("Command line contains %s", what), true
}
