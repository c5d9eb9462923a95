package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// smuggleSequences are the end-of-data variants of SMTP smuggling (SEC
// Consult 2023; CVE-2023-51764, -51765, -51766). Only <CRLF>.<CRLF> may
// end DATA (RFC 5321 4.1.1.4); a server that takes any of these as the end
// lets a sender hide a second message inside the first, which the next hop
// may split off.
var smuggleSequences = []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r.\r", "\r\n\x00.\r\n"}

// showSeq writes a sequence the way it is reported: "\r\n.\n".
func showSeq(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// checkSmuggling sends, once per sequence on a fresh connection, a test
// message to SmuggleTo whose body holds the sequence followed by a second,
// smuggled transaction. If the server answers more than once, it took the
// sequence as the end of the first message and ran the smuggled commands.
func checkSmuggling(ctx context.Context, o *Options, r *Report) {
	r.Smuggling.Tested = true
	useTLS := r.TLS.Version != "" && !r.TLS.Implicit
	var evidence []string
	for i, seq := range smuggleSequences {
		if ctx.Err() != nil {
			return
		}
		accepted, ev, err := smuggleOnce(ctx, o, useTLS, seq, i+1)
		if err != nil {
			r.errorf("smuggling check %s: %v", showSeq(seq), err)
			if _, ok := err.(*replyError); ok {
				return // the recipient or sender is refused: nothing to learn
			}
			continue
		}
		if accepted {
			r.Smuggling.AcceptedSequences = append(r.Smuggling.AcceptedSequences, showSeq(seq))
			if len(evidence) < 12 {
				evidence = append(evidence, ev...)
			}
		}
	}
	if len(r.Smuggling.AcceptedSequences) > 0 {
		r.add(Finding{ID: "smtp-smuggling", Severity: High,
			Title: "SMTP smuggling: the server takes " + strings.Join(r.Smuggling.AcceptedSequences, ", ") +
				" as the end of DATA, so a hidden second message can be injected (CVE-2023-51764 class)",
			Evidence: evidence,
			Fix:      "End DATA only at <CRLF>.<CRLF> and reject bare CR or LF (Postfix 3.8.5+/3.7.10+: smtpd_forbid_bare_newline = normalize; Exim 4.97.1+; Sendmail 8.18)."})
	}
}

// smuggleOnce tests one sequence.
func smuggleOnce(ctx context.Context, o *Options, useTLS bool, seq string, n int) (bool, []string, error) {
	s, err := openSMTP(ctx, o, useTLS)
	if err != nil {
		return false, nil, err
	}
	defer s.quit()
	mail := "MAIL FROM:<" + o.From + ">"
	rcpt := "RCPT TO:<" + o.SmuggleTo + ">"
	for _, c := range []string{mail, rcpt} {
		rep, err := s.cmd(c)
		if err != nil {
			return false, nil, err
		}
		if rep.code != 250 && rep.code != 251 {
			return false, nil, &replyError{c, rep}
		}
	}
	dr, err := s.cmd("DATA")
	if err != nil {
		return false, nil, err
	}
	if dr.code != 354 {
		return false, nil, &replyError{"DATA", dr}
	}
	id := o.randomLocal()
	header := func(part string) string {
		return "From: <postern-audit@postern-audit.invalid>\r\nTo: <" + o.SmuggleTo + ">\r\n" +
			"Subject: postern audit: SMTP smuggling test " + strconv.Itoa(n) + " " + part + "\r\n" +
			"Date: " + o.Now().UTC().Format(time.RFC1123Z) + "\r\n" +
			"Message-ID: <smuggling." + id + "." + part + "@postern-audit.invalid>\r\n\r\n"
	}
	body := header("outer") +
		"This harmless message was sent by `postern audit --smuggling` to test\r\n" +
		"whether " + o.Target + " ends DATA at " + showSeq(seq) + ".\r\n" +
		seq +
		mail + "\r\n" + rcpt + "\r\nDATA\r\n" +
		header("smuggled") +
		"If this arrived as a message of its own, the server is open to SMTP smuggling.\r\n" +
		".\r\n"
	if err := s.writeRaw([]byte(body)); err != nil {
		return false, nil, err
	}
	first, err := s.readReply()
	if err != nil {
		return false, nil, err
	}
	ev := []string{fmt.Sprintf("C: (message %d with %s then MAIL/RCPT/DATA inside) .", n, showSeq(seq)), "S: " + first.text()}
	if !first.positive() {
		return false, ev, nil
	}
	if line, ok := s.pending(o.Settle); ok {
		ev = append(ev, "S: "+line+"   <- the smuggled commands were answered")
		return true, ev, nil
	}
	return false, ev, nil
}
