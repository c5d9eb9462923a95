package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

type dsnKind int

const (
	dsnFailure dsnKind = iota
	dsnDelay
	dsnSuccess
)

// dsnRecipient is one recipient reported on in a DSN.
type dsnRecipient struct {
	entry   store.QueueEntry
	result  Result
	remote  string
	when    time.Time
	expired bool
}

// status returns the RFC 3463 status of a result.
func status(r Result) string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	switch {
	case r.Code >= 500:
		return "5.0.0"
	case r.Code >= 400:
		return "4.0.0"
	}
	return "2.0.0"
}

// maxReturned bounds the original message included with RET=FULL.
const maxReturned = 10 << 20

// buildDSN writes an RFC 3464 multipart/report for one message's recipients.
func buildDSN(hostname string, kind dsnKind, rs []dsnRecipient, original io.Reader, maxLifetime time.Duration) ([]byte, error) {
	e0 := rs[0].entry
	var bnd [12]byte
	rand.Read(bnd[:])
	boundary := "postern-" + hex.EncodeToString(bnd[:])
	now := rs[0].when
	var b bytes.Buffer
	subject := map[dsnKind]string{
		dsnFailure: "Undelivered Mail Returned to Sender",
		dsnDelay:   "Delayed Mail (still being retried)",
		dsnSuccess: "Successful Mail Delivery Report",
	}[kind]
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", hostname)
	fmt.Fprintf(&b, "To: <%s>\r\n", e0.From)
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.dsn.%d@%s>\r\n", e0.QueueID, now.UnixNano(), hostname)
	b.WriteString("Auto-Submitted: auto-replied\r\n") // RFC 3834
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	b.WriteString("This is a MIME-encapsulated message.\r\n\r\n")

	// Human-readable part.
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Description: Notification\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", hostname)
	switch kind {
	case dsnFailure:
		b.WriteString("Your message could not be delivered to one or more recipients.\r\nIt is attached below.\r\n\r\n")
	case dsnDelay:
		fmt.Fprintf(&b, "Your message has not been delivered yet to the recipients below.\r\nIt will be retried until %s;\r\nyou do not need to send it again.\r\n\r\n",
			e0.Created.Add(maxLifetime).UTC().Format(time.RFC1123Z))
	case dsnSuccess:
		b.WriteString("Your message was delivered to the destination server for the recipients below.\r\n\r\n")
	}
	for _, r := range rs {
		fmt.Fprintf(&b, "<%s>: ", r.entry.Recipient)
		switch {
		case r.expired:
			fmt.Fprintf(&b, "delivery gave up after %d attempts; last: %d %s %s\r\n", r.entry.Attempts+1, r.result.Code, r.result.Enhanced, oneLine(r.result.Text))
		case r.remote != "":
			fmt.Fprintf(&b, "host %s said: %d %s %s\r\n", r.remote, r.result.Code, r.result.Enhanced, oneLine(r.result.Text))
		default:
			fmt.Fprintf(&b, "%d %s %s\r\n", r.result.Code, r.result.Enhanced, oneLine(r.result.Text))
		}
	}
	b.WriteString("\r\n")

	// Machine-readable part (RFC 3464 2.2 and 2.3).
	fmt.Fprintf(&b, "--%s\r\nContent-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n\r\n", boundary)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", hostname)
	fmt.Fprintf(&b, "X-Postern-Queue-ID: %s\r\n", e0.QueueID)
	if e0.EnvID != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\r\n", e0.EnvID)
	}
	fmt.Fprintf(&b, "Arrival-Date: %s\r\n", e0.Created.Format(time.RFC1123Z))
	for _, r := range rs {
		b.WriteString("\r\n")
		fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\r\n", r.entry.Recipient)
		if r.entry.ORcpt != "" {
			orcpt := r.entry.ORcpt
			if !strings.Contains(orcpt, ";") {
				orcpt = "rfc822; " + orcpt
			}
			fmt.Fprintf(&b, "Original-Recipient: %s\r\n", orcpt)
		}
		action := map[dsnKind]string{dsnFailure: "failed", dsnDelay: "delayed", dsnSuccess: "relayed"}[kind]
		fmt.Fprintf(&b, "Action: %s\r\n", action)
		st := status(r.result)
		if kind == dsnFailure && !strings.HasPrefix(st, "5.") {
			// Expired after temporary failures: report it as permanent.
			st = "5" + st[1:]
		}
		fmt.Fprintf(&b, "Status: %s\r\n", st)
		if r.remote != "" {
			fmt.Fprintf(&b, "Remote-MTA: dns; %s\r\n", r.remote)
		}
		if r.result.Code > 0 {
			fmt.Fprintf(&b, "Diagnostic-Code: smtp; %d %s\r\n", r.result.Code, strings.TrimSpace(r.result.Enhanced+" "+oneLine(r.result.Text)))
		}
		fmt.Fprintf(&b, "Last-Attempt-Date: %s\r\n", r.when.Format(time.RFC1123Z))
		if kind == dsnDelay {
			fmt.Fprintf(&b, "Will-Retry-Until: %s\r\n", r.entry.Created.Add(maxLifetime).Format(time.RFC1123Z))
		}
	}
	b.WriteString("\r\n")

	// The original: whole with RET=FULL (bounded), else its header.
	if original != nil {
		br := bufio.NewReader(original)
		if strings.EqualFold(e0.Ret, "FULL") && e0.Size <= maxReturned {
			fmt.Fprintf(&b, "--%s\r\nContent-Type: message/rfc822\r\nContent-Description: Undelivered Message\r\n\r\n", boundary)
			if _, err := io.Copy(&b, br); err != nil {
				return nil, err
			}
		} else {
			fmt.Fprintf(&b, "--%s\r\nContent-Type: text/rfc822-headers\r\nContent-Description: Undelivered Message Headers\r\n\r\n", boundary)
			for {
				line, err := br.ReadString('\n')
				if line == "\r\n" || line == "\n" {
					break
				}
				b.WriteString(line)
				if err != nil {
					if errors.Is(err, io.EOF) {
						break
					}
					return nil, err
				}
			}
		}
		if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return normalizeCRLF(b.Bytes()), nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// normalizeCRLF turns bare CR or LF (from an original message stored with
// LF, which Postern never does, or a remote's text) into CRLF.
func normalizeCRLF(in []byte) []byte {
	out := make([]byte, 0, len(in)+64)
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// sendDSN builds and delivers a DSN for recipients of one message: into the
// sender's INBOX when the sender is local, through the queue otherwise,
// always from <> and never for a message that itself came from <>.
func (q *Queue) sendDSN(ctx context.Context, kind dsnKind, rs []dsnRecipient) {
	e0 := rs[0].entry
	if e0.From == "" {
		q.log.Info("queue: no DSN for a message from <>", "qid", e0.QueueID)
		return
	}
	var original io.Reader
	if r, err := q.st.OpenMessage(ctx, e0.MessageID); err == nil {
		defer r.Close()
		original = r
	} else {
		q.log.Warn("queue: DSN without the original", "qid", e0.QueueID, "err", err)
	}
	msg, err := buildDSN(q.cfg.Hostname, kind, rs, original, q.cfg.MaxLifetime)
	if err != nil {
		q.log.Error("queue: building DSN", "qid", e0.QueueID, "err", err)
		return
	}
	bw, err := q.local.NewBlob()
	if err != nil {
		q.log.Error("queue: DSN", "err", err)
		return
	}
	if _, err := bw.Write(msg); err != nil {
		bw.Abort()
		q.log.Error("queue: DSN", "err", err)
		return
	}
	d := &store.Delivery{Blob: bw, From: "", HeaderMessageID: fmt.Sprintf("%s.dsn@%s", e0.QueueID, q.cfg.Hostname), Received: time.Now()}
	dest := "remote"
	at := strings.LastIndexByte(e0.From, '@')
	isLocal := false
	if at > 0 {
		isLocal, _ = q.local.HasDomain(ctx, e0.From[at+1:])
	}
	if isLocal {
		users, err := q.local.ResolveLocal(ctx, e0.From)
		if err != nil {
			bw.Abort()
			q.log.Warn("queue: DSN for an unknown local sender dropped", "qid", e0.QueueID, "sender", e0.From, "err", err)
			return
		}
		for _, u := range users {
			d.Recipients = append(d.Recipients, store.LocalRecipient{UserID: u.ID, Mailbox: "INBOX",
				Prefix: []byte("Return-Path: <>\r\nDelivered-To: " + u.Address + "\r\n")})
		}
		dest = "local"
	} else {
		d.Remote = []store.RemoteRecipient{{Address: e0.From, Notify: "NEVER"}}
	}
	kindName := map[dsnKind]string{dsnFailure: "failure", dsnDelay: "delay", dsnSuccess: "success"}[kind]
	d.Events = []store.Event{{Kind: "received", Detail: fmt.Sprintf("from=<> dsn=%s for=%s to=<%s> (%s)", kindName, e0.QueueID, e0.From, dest)}}
	if err := q.local.Deliver(ctx, d); err != nil {
		q.log.Error("queue: storing DSN", "qid", e0.QueueID, "err", err)
		return
	}
	dsnsTotal.WithLabelValues(kindName).Inc()
	q.log.Info("queue dsn", "qid", e0.QueueID, "kind", kindName, "to", e0.From, "dsn_qid", bw.QueueID())
}
