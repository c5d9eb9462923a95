package courier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// transact runs one mail transaction on cn for all of env's recipients and
// returns a result for each and whether cn can be used again. stale reports
// a reused connection found dead at MAIL FROM: the caller should retry on a
// new connection and ignore the results.
func (c *Courier) transact(ctx context.Context, cn *conn, env Envelope, open func() (io.ReadCloser, error)) (results []RcptResult, reusable, stale bool) {
	results, reusable = c.transaction(ctx, cn, env, open, &stale)
	return results, reusable, stale
}

func (c *Courier) transaction(ctx context.Context, cn *conn, env Envelope, open func() (io.ReadCloser, error), stale *bool) ([]RcptResult, bool) {
	stop := context.AfterFunc(ctx, func() { cn.nc.Close() })
	defer stop()
	lost := func(err error, during string) reply {
		if ctx.Err() != nil {
			return reply{451, "4.4.2", fmt.Sprintf("delivery to %s interrupted during %s", cn.host, during)}
		}
		return reply{451, "4.4.2", fmt.Sprintf("lost connection with %s during %s: %s", cn.host, during, netErrText(err))}
	}

	if env.UTF8 {
		if ok, _ := cn.c.Extension("SMTPUTF8"); !ok {
			// RFC 6531 3.4: no downgrade here; the sender learns why.
			return all(env, reply{553, "5.6.7", fmt.Sprintf("%s does not support SMTPUTF8, which the message needs", cn.host)}), true
		}
	}
	// Open the message first: a read failure must not leave a DATA open.
	msg, err := open()
	if err != nil {
		return all(env, reply{451, "4.3.0", fmt.Sprintf("cannot read the queued message: %v", err)}), true
	}
	defer msg.Close()

	// go-smtp refuses some arguments itself, without a word to the remote;
	// such an error would look like a lost connection, so check first.
	if !validAddress(env.From) {
		return all(env, reply{553, "5.1.7", fmt.Sprintf("bad sender address %q", env.From)}), true
	}
	if err := cn.c.Mail(env.From, mailOptions(env)); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// 421: the reused connection is being closed (RFC 5321 3.8).
			*stale = cn.reused && se.Code == 421
			return all(env, remoteReply(se, cn.host)), c.reset(cn)
		}
		*stale = cn.reused && ctx.Err() == nil
		return all(env, lost(err, "MAIL FROM")), false
	}

	results := make([]RcptResult, len(env.Recipients))
	var accepted []int
	for i, rcpt := range env.Recipients {
		if !validAddress(rcpt) {
			results[i] = reply{553, "5.1.3", fmt.Sprintf("bad recipient address %q", rcpt)}.result(rcpt)
			continue
		}
		err := cn.c.Rcpt(rcpt, rcptOptions(env, i))
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.As(err, &se):
			results[i] = remoteReply(se, cn.host).result(rcpt)
		default:
			r := lost(err, "RCPT TO")
			for j := range env.Recipients {
				if j >= i || results[j].Code == 0 {
					results[j] = r.result(env.Recipients[j])
				}
			}
			return results, false
		}
	}
	if len(accepted) == 0 {
		return results, c.reset(cn)
	}
	setAccepted := func(r reply) {
		for _, i := range accepted {
			results[i] = r.result(env.Recipients[i])
		}
	}

	w, err := cn.c.Data()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			setAccepted(remoteReply(se, cn.host))
			return results, c.reset(cn)
		}
		setAccepted(lost(err, "DATA"))
		return results, false
	}
	cn.tr.setMute(true, "<message text>")
	defer cn.tr.setMute(false, "")
	dw := newDataWriter(deadlineWriter{cn.nc, c.cfg.CommandTimeout})
	if _, err := io.Copy(dw, readerOnly{msg}); err != nil {
		// Ending the DATA now would deliver a truncated message: drop the
		// connection instead, the remote discards the transaction.
		var re readError
		if errors.As(err, &re) {
			setAccepted(reply{451, "4.3.0", fmt.Sprintf("cannot read the queued message: %v", re.err)})
		} else {
			setAccepted(lost(err, "message transfer"))
		}
		return results, false
	}
	// The text went straight to the connection; its last line end goes
	// through go-smtp's writer (see dataWriter), which then ends the data.
	if err := dw.flush(); err != nil {
		setAccepted(lost(err, "message transfer"))
		return results, false
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		setAccepted(lost(err, "message transfer"))
		return results, false
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			setAccepted(remoteReply(se, cn.host))
			return results, se.Code != 421 // 421: the remote is closing
		}
		// RFC 5321 6.1: no reply after the final dot: the message may have
		// been delivered, but only a retry is safe from loss.
		setAccepted(lost(err, "end of data"))
		return results, false
	}
	text := fmt.Sprintf("%s said: %s", cn.host, resp.StatusText)
	enh := ""
	if code, rest, ok := cutEnhanced(resp.StatusText); ok {
		enh, text = code, fmt.Sprintf("%s said: %s", cn.host, rest)
	}
	setAccepted(reply{250, enh, text})
	return results, true
}

// validAddress reports whether go-smtp will send addr: one line of
// reasonable length (RFC 5321 4.5.3.1.3: a path is at most 256 octets).
func validAddress(addr string) bool {
	return len(addr) <= 256 && !strings.ContainsAny(addr, "\r\n<>")
}

// mailOptions are the MAIL FROM parameters; go-smtp adds SIZE and the DSN
// ones only when the remote offers them.
func mailOptions(env Envelope) *smtp.MailOptions {
	o := &smtp.MailOptions{Size: env.Size, UTF8: env.UTF8}
	switch strings.ToUpper(env.Ret) {
	case "FULL":
		o.Return = smtp.DSNReturnFull
	case "HDRS":
		o.Return = smtp.DSNReturnHeaders
	}
	if printableASCII(env.EnvID) && len(env.EnvID) <= 100 {
		o.EnvelopeID = env.EnvID
	}
	return o
}

// rcptOptions are recipient i's DSN parameters, the malformed ones left out.
func rcptOptions(env Envelope, i int) *smtp.RcptOptions {
	if i >= len(env.DSN) {
		return nil
	}
	d := env.DSN[i]
	o := &smtp.RcptOptions{}
	if d.Notify != "" {
		seen := map[smtp.DSNNotify]bool{}
		for _, v := range strings.Split(strings.ToUpper(d.Notify), ",") {
			n := smtp.DSNNotify(strings.TrimSpace(v))
			switch n {
			case smtp.DSNNotifyNever, smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed:
				if !seen[n] {
					seen[n] = true
					o.Notify = append(o.Notify, n)
				}
			}
		}
		if seen[smtp.DSNNotifyNever] && len(o.Notify) > 1 {
			o.Notify = nil // NEVER with anything else is malformed
		}
	}
	if typ, addr, ok := strings.Cut(d.ORcpt, ";"); ok && addr != "" {
		switch strings.ToUpper(typ) {
		case "RFC822":
			if printableASCII(addr) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
			}
		case "UTF-8":
			if !strings.ContainsAny(addr, "\r\n") {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
			}
		}
	}
	return o
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// reset ends an unfinished transaction and reports whether cn is still usable.
func (c *Courier) reset(cn *conn) bool {
	cn.nc.SetDeadline(time.Now().Add(c.cfg.CommandTimeout))
	defer cn.nc.SetDeadline(time.Time{})
	return cn.c.Reset() == nil
}

// cutEnhanced splits "2.0.0 OK" into its enhanced status code and text.
func cutEnhanced(s string) (string, string, bool) {
	var a, b, d int
	var rest string
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			rest = s[i+1:]
			s = s[:i]
			break
		}
	}
	if n, err := fmt.Sscanf(s, "%d.%d.%d", &a, &b, &d); err != nil || n != 3 || a < 2 || a > 5 {
		return "", "", false
	}
	return fmt.Sprintf("%d.%d.%d", a, b, d), rest, true
}

// readError marks a failure to read the stored message (not the network).
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

// readerOnly hides WriterTo and tags read errors as ours.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}
