package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern-mail/postern/internal/store"
)

// recipient is one accepted RCPT TO and the users it reaches.
type recipient struct {
	address string
	users   []store.User
}

type session struct {
	s    *Server
	conn *smtp.Conn
	ip   string
	log  *slog.Logger

	// mu guards the envelope: with BDAT, go-smtp runs Data in a goroutine
	// of its own, which an aborted transfer leaves running while the
	// connection goes on to Reset and the next MAIL.
	mu      sync.Mutex
	from    string
	hasMail bool
	rcpts   []recipient
	remote  []store.RemoteRecipient // submission: recipients in other domains
	ret     string                  // DSN RET
	envID   string                  // DSN ENVID
	user    *store.User             // submission: the authenticated user
	unknown int                     // unknown recipients in this connection
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	ip := remoteIP(c.Conn().RemoteAddr())
	ss := &session{s: s, conn: c, ip: ip, log: s.log.With("ip", ip)}
	if s.cfg.Submission {
		return &submissionSession{ss}, nil
	}
	return ss, nil
}

func (ss *session) Reset() {
	ss.mu.Lock()
	ss.from, ss.hasMail, ss.rcpts, ss.remote, ss.ret, ss.envID = "", false, nil, nil, "", ""
	ss.mu.Unlock()
}

func (ss *session) Logout() error { return nil }

func smtpErr(code int, ec smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

var errTempLookup = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary lookup failure, try again later")

// Mail starts a transaction. The null sender <> is allowed (bounces).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if from != "" {
		if _, _, ok := splitAddr(from); !ok {
			messagesRejected.WithLabelValues(reasonBadAddress).Inc()
			return smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax")
		}
	}
	ss.mu.Lock()
	user := ss.user
	ss.mu.Unlock()
	if ss.s.cfg.Submission {
		if user == nil {
			messagesRejected.WithLabelValues(reasonAuthRequired).Inc()
			return errAuthRequired
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ok, err := ss.senderAllowed(ctx, user, from)
		if err != nil {
			ss.log.Error("sender lookup failed", "err", err)
			return errTempLookup
		}
		if !ok {
			messagesRejected.WithLabelValues(reasonSenderNotOwned).Inc()
			ss.log.Info("sender refused", "from", from, "status", "not the user's address")
			return smtpErr(553, smtp.EnhancedCode{5, 7, 1}, "<"+from+">: Sender address not owned by user "+user.Address)
		}
	}
	ss.mu.Lock()
	ss.from, ss.hasMail, ss.rcpts, ss.remote = from, true, nil, nil
	ss.ret, ss.envID = "", ""
	if opts != nil {
		ss.ret, ss.envID = string(opts.Return), opts.EnvelopeID
	}
	ss.mu.Unlock()
	return nil
}

// splitAddr splits local@domain; both parts must be non-empty.
func splitAddr(a string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", "", false
	}
	return a[:at], a[at+1:], true
}

// postmasterDomain is the hosted domain for a bare "postmaster": the
// hostname or the nearest parent of it that is hosted here (mail.example.org
// serves example.org); the hostname itself when none is.
func (ss *session) postmasterDomain(ctx context.Context) (string, error) {
	for d := strings.ToLower(ss.s.cfg.Hostname); strings.Contains(d, "."); d = d[strings.IndexByte(d, '.')+1:] {
		ok, err := ss.s.be.HasDomain(ctx, d)
		if err != nil {
			return "", err
		}
		if ok {
			return d, nil
		}
	}
	return ss.s.cfg.Hostname, nil
}

// Rcpt accepts a recipient, then applies the address-harvesting defence.
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	return ss.probeDefence(to, ss.rcpt(to, opts))
}

// maxProbeDelay caps the delay of one RCPT reply.
const maxProbeDelay = 30 * time.Second

// probeDefence counts unknown recipients of unauthenticated sessions: past
// the thresholds, every reply (known or unknown alike, so that timing tells
// nothing) is delayed more and more, then the connection or the whole IP
// gets 421 4.7.0.
func (ss *session) probeDefence(to string, err error) error {
	cfg := &ss.s.cfg
	ss.mu.Lock()
	authenticated := ss.user != nil
	ss.mu.Unlock()
	if authenticated {
		return err
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 550 && se.EnhancedCode == (smtp.EnhancedCode{5, 1, 1}) {
		ss.unknown++
		if ss.s.probes.record(ss.ip) {
			messagesRejected.WithLabelValues(reasonProbing).Inc()
			ss.log.Warn("address harvesting: IP cooling down", "to", to, "unknown", ss.unknown)
			stopReading(ss.conn.Conn())
			return smtpErr(421, smtp.EnhancedCode{4, 7, 0}, ss.s.cfg.Hostname+" Too many unknown recipients from your address, closing connection")
		}
		if cfg.UnknownRcptMax > 0 && ss.unknown > cfg.UnknownRcptMax {
			messagesRejected.WithLabelValues(reasonProbing).Inc()
			ss.log.Warn("address harvesting: connection closed", "to", to, "unknown", ss.unknown)
			stopReading(ss.conn.Conn())
			return smtpErr(421, smtp.EnhancedCode{4, 7, 0}, ss.s.cfg.Hostname+" Too many unknown recipients, closing connection")
		}
	}
	if cfg.UnknownRcptDelayAfter > 0 && ss.unknown > cfg.UnknownRcptDelayAfter {
		d := cfg.UnknownRcptDelay * time.Duration(ss.unknown-cfg.UnknownRcptDelayAfter)
		ss.pause(min(d, maxProbeDelay))
	}
	if j := cfg.RcptJitter; j > 0 {
		ss.pause(rand.N(j))
	}
	return err
}

// rcpt accepts local users and aliases, and any domain for an
// authenticated submission.
func (ss *session) rcpt(to string, opts *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, domain, ok := splitAddr(to)
	if !ok {
		if strings.EqualFold(to, "postmaster") { // RFC 5321 4.5.1
			d, err := ss.postmasterDomain(ctx)
			if err != nil {
				ss.log.Error("domain lookup failed", "err", err)
				messagesRejected.WithLabelValues(reasonTempFailure).Inc()
				return errTempLookup
			}
			to, domain = "postmaster@"+d, d
		} else {
			messagesRejected.WithLabelValues(reasonBadAddress).Inc()
			return smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
		}
	}
	local := false
	if strings.HasPrefix(domain, "[") && ss.s.ownIPLiteral(domain) {
		// user@[our IP] is user@<primary domain>.
		d, err := ss.postmasterDomain(ctx)
		if err != nil {
			ss.log.Error("domain lookup failed", "err", err)
			messagesRejected.WithLabelValues(reasonTempFailure).Inc()
			return errTempLookup
		}
		ss.log.Debug("address literal taken as local", "to", to, "domain", d)
		to, domain = to[:len(to)-len(domain)]+d, d
	}
	if !strings.HasPrefix(domain, "[") { // other address literals are never local
		var err error
		local, err = ss.s.be.HasDomain(ctx, domain)
		if err != nil {
			ss.log.Error("domain lookup failed", "domain", domain, "err", err)
			messagesRejected.WithLabelValues(reasonTempFailure).Inc()
			return errTempLookup
		}
	}
	ss.mu.Lock()
	user := ss.user
	ss.mu.Unlock()
	if ss.s.cfg.Submission && user == nil {
		return errAuthRequired
	}
	if !local && user != nil {
		// Authenticated submission: any domain, delivered by the queue.
		rr := store.RemoteRecipient{Address: to}
		if opts != nil {
			var notify []string
			for _, n := range opts.Notify {
				notify = append(notify, string(n))
			}
			rr.Notify = strings.Join(notify, ",")
			if opts.OriginalRecipient != "" {
				rr.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
			}
		}
		ss.mu.Lock()
		ss.remote = append(ss.remote, rr)
		ss.mu.Unlock()
		return nil
	}
	if !local {
		messagesRejected.WithLabelValues(reasonRelayDenied).Inc()
		ss.log.Info("recipient rejected", "from", ss.from, "to", to, "status", "relay denied")
		return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "<"+to+">: Relay access denied")
	}
	users, forward, err := ss.s.be.ResolveRecipient(ctx, to)
	if errors.Is(err, store.ErrNotFound) {
		messagesRejected.WithLabelValues(reasonUnknownUser).Inc()
		ss.log.Info("recipient rejected", "from", ss.from, "to", to, "status", "user unknown")
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<"+to+">: Recipient address rejected: User unknown")
	}
	if err != nil {
		ss.log.Error("recipient lookup failed", "to", to, "err", err)
		messagesRejected.WithLabelValues(reasonTempFailure).Inc()
		return errTempLookup
	}
	ss.mu.Lock()
	if len(users) > 0 {
		ss.rcpts = append(ss.rcpts, recipient{address: to, users: users})
	}
	for _, f := range forward {
		// An alias forwarding elsewhere: the queue delivers it, with the
		// original envelope sender (no SRS; see the README).
		ss.remote = append(ss.remote, store.RemoteRecipient{Address: f, ORcpt: "rfc822;" + to})
	}
	ss.mu.Unlock()
	return nil
}

// Data receives the message, stores it durably, then answers 250.
func (ss *session) Data(r io.Reader) error {
	start := time.Now()
	ss.mu.Lock()
	from, rcpts, remote, ret, envID, user := ss.from, ss.rcpts, ss.remote, ss.ret, ss.envID, ss.user
	ss.mu.Unlock()
	if lc := limitedConnOf(ss.conn.Conn()); lc != nil && ss.s.cfg.DataTimeout > 0 {
		// go-smtp sets a deadline per command line, not while reading
		// data. data_timeout bounds each wait for more data (like
		// Postfix's smtpd_timeout), not the whole transfer, so a large
		// message on a slow link is not cut off while it still flows.
		lc.idle.Store(int64(ss.s.cfg.DataTimeout))
		defer lc.idle.Store(0)
	}
	bw, err := ss.s.be.NewBlob()
	if err != nil {
		ss.log.Error("cannot create message file", "err", err)
		messagesRejected.WithLabelValues(reasonTempFailure).Inc()
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary storage failure, try again later")
	}
	qid := bw.QueueID()
	now := time.Now()
	tlsState, isTLS := ss.conn.TLSConnectionState()
	if _, err := io.WriteString(bw, ss.receivedHeader(qid, rcpts, remote, user != nil, now, tlsState, isTLS)); err != nil {
		bw.Abort()
		return ss.storageFailure(qid, from, err)
	}
	// On the MX, forged Authentication-Results fields are dropped on the
	// way into the blob, and the Checker reads a copy of the message as it
	// arrives (see checkRun).
	var dst io.Writer = bw
	var arf *arFilter
	var run *checkRun
	if user == nil && !ss.s.cfg.Submission {
		arf = &arFilter{w: bw, id: ss.s.cfg.Hostname}
		dst = arf
		if ss.s.cfg.Checker != nil {
			run = startCheck(ss.s.cfg.Checker, net.ParseIP(ss.ip), ss.conn.Hostname(), from)
			dst = &teeWriter{w: arf, side: run.pw}
		}
	}
	chk := &lineChecker{w: dst, maxLine: ss.s.cfg.MaxLineLength}
	_, err = io.Copy(chk, r)
	if err == nil {
		err = chk.finish()
	}
	if err == nil && arf != nil {
		err = arf.finish()
	}
	var auth CheckResult
	if run != nil {
		var cerr error
		auth, cerr = run.finish(err)
		if err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		bw.Abort()
		var se *smtp.SMTPError
		switch {
		case errors.Is(err, errBareLineEnd):
			messagesRejected.WithLabelValues(reasonBareLineEnd).Inc()
			ss.log.Info("message rejected", "qid", qid, "from", from, "status", "bare CR or LF")
			return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message contains a bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)")
		case errors.Is(err, errNUL):
			messagesRejected.WithLabelValues(reasonNUL).Inc()
			ss.log.Info("message rejected", "qid", qid, "from", from, "status", "NUL character")
			return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message contains a NUL character, which is not allowed (RFC 5322 2.1)")
		case errors.Is(err, smtp.ErrTooLongLine), errors.Is(err, errLongLine):
			// go-smtp closes the connection after this reply over DATA;
			// over BDAT (errLongLine) the chunk framing holds and the
			// session goes on.
			messagesRejected.WithLabelValues(reasonLineTooLong).Inc()
			ss.log.Info("message rejected", "qid", qid, "from", from, "status", "line too long")
			return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, fmt.Sprintf("Message has a line longer than %d bytes", ss.s.cfg.MaxLineLength))
		case errors.Is(err, smtp.ErrDataTooLarge):
			messagesRejected.WithLabelValues(reasonTooBig).Inc()
			ss.log.Info("message rejected", "qid", qid, "from", from, "status", "too big")
			return smtp.ErrDataTooLarge
		case errors.As(err, &se):
			return se
		default:
			// The client went away or timed out mid-message: nothing is kept.
			messagesRejected.WithLabelValues(reasonDataIncomplete).Inc()
			ss.log.Info("message incomplete", "qid", qid, "from", from, "err", err)
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				// The rest of the message may still arrive; read as
				// commands, it could inject a transaction. Close instead
				// (RFC 5321 4.5.3.2.5: the server may abort on timeout).
				stopReading(ss.conn.Conn())
				return smtpErr(421, smtp.EnhancedCode{4, 4, 2}, ss.s.cfg.Hostname+" Timeout reading message data, closing connection")
			}
			return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Message incomplete, not accepted")
		}
	}
	var delivered []string
	if n, max := countReceived(chk.header.Bytes())+1, ss.s.maxReceived(); n > max { // ours included
		// RFC 5321 6.3: a mail loop.
		bw.Abort()
		messagesRejected.WithLabelValues(reasonLoop).Inc()
		ss.log.Info("message rejected", "qid", qid, "from", from, "status", "mail loop", "received_headers", n)
		return smtpErr(554, smtp.EnhancedCode{5, 4, 6}, fmt.Sprintf("Too many Received headers (%d): mail loop", n))
	}
	if se := checkFrom(chk.header.Bytes(), user == nil && !ss.s.cfg.Submission); se != nil {
		bw.Abort()
		messagesRejected.WithLabelValues(reasonBadFrom).Inc()
		ss.log.Info("message rejected", "qid", qid, "from", from, "status", "bad From header", "reason", se.Message)
		return se
	}
	mailbox := "INBOX"
	if run != nil {
		if se := ss.applyVerdict(qid, from, auth); se != nil {
			bw.Abort()
			return se
		}
		if auth.Verdict == VerdictJunk {
			mailbox = "Junk"
		}
	}
	d := &store.Delivery{
		Blob:            bw,
		From:            from,
		HeaderMessageID: headerMessageID(chk.header.Bytes()),
		Received:        now,
		Remote:          remote,
		Ret:             ret,
		EnvID:           envID,
	}
	for _, r := range remote {
		d.Events = append(d.Events, store.Event{Time: now, Kind: "queued", Detail: fmt.Sprintf("to=<%s> route=remote", r.Address)})
		delivered = append(delivered, r.Address)
	}
	seen := map[int64]bool{}
	for _, rc := range rcpts {
		for _, u := range rc.users {
			if seen[u.ID] { // one copy per user, like Postfix's duplicate elimination
				continue
			}
			seen[u.ID] = true
			prefix := "Return-Path: <" + from + ">\r\nDelivered-To: " + u.Address + "\r\n" + auth.Header
			d.Recipients = append(d.Recipients, store.LocalRecipient{UserID: u.ID, Mailbox: mailbox, Prefix: []byte(prefix)})
			delivered = append(delivered, u.Address)
			d.Events = append(d.Events, store.Event{Time: now, Kind: "delivered", Detail: fmt.Sprintf("to=<%s> orig_to=<%s> mailbox=%s", u.Address, rc.address, mailbox)})
		}
	}
	tlsInfo := "none"
	if isTLS {
		tlsInfo = tls.VersionName(tlsState.Version) + " " + tls.CipherSuiteName(tlsState.CipherSuite)
	}
	d.Events = append([]store.Event{{Time: now, Kind: "received", Detail: fmt.Sprintf("from=<%s> ip=%s helo=%s tls=%q size=%d nrcpt=%d msgid=<%s>",
		from, ss.ip, sanitize(ss.conn.Hostname()), tlsInfo, bw.Size(), len(rcpts), d.HeaderMessageID)}}, d.Events...)
	if user != nil {
		d.Events[0].Detail += " user=" + user.Address
	}
	if auth.Summary != "" {
		d.Events[0].Detail += " auth=" + strconv.Quote(auth.Summary)
	}
	if err := ss.s.be.Deliver(context.Background(), d); err != nil {
		return ss.storageFailure(qid, from, err)
	}
	messagesAccepted.Inc()
	bytesReceived.Add(float64(bw.Size()))
	status := "delivered" // to local mailboxes only
	switch {
	case len(d.Remote) > 0 && len(d.Recipients) > 0:
		status = "delivered+queued"
	case len(d.Remote) > 0:
		status, mailbox = "queued", "-"
	}
	ss.log.Info("message accepted", "qid", qid, "from", from, "to", strings.Join(delivered, ","), "size", bw.Size(),
		"msgid", d.HeaderMessageID, "tls", tlsInfo, "auth", auth.Summary, "mailbox", mailbox, "status", status, "ms", time.Since(start).Milliseconds())
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as "+qid)
}

// applyVerdict turns a reject or tempfail of the Checker into the reply at
// the end of data (nil: deliver).
func (ss *session) applyVerdict(qid, from string, auth CheckResult) *smtp.SMTPError {
	var code int
	var ec smtp.EnhancedCode
	switch auth.Verdict {
	case VerdictReject:
		code, ec = 550, smtp.EnhancedCode{5, 7, 1}
		messagesRejected.WithLabelValues(reasonAuthFailed).Inc()
	case VerdictTempFail:
		code, ec = 451, smtp.EnhancedCode{4, 7, 0}
		messagesRejected.WithLabelValues(reasonTempFailure).Inc()
	default:
		return nil
	}
	if auth.Enhanced != [3]int{} {
		ec = smtp.EnhancedCode(auth.Enhanced)
	}
	msg := auth.Reason
	if msg == "" {
		msg = "Sender authentication failed"
	}
	ss.log.Info("message rejected", "qid", qid, "from", from, "auth", auth.Summary, "status", auth.Verdict.String(), "reason", msg)
	return smtpErr(code, ec, msg)
}

func (v Verdict) String() string {
	switch v {
	case VerdictAccept:
		return "accept"
	case VerdictJunk:
		return "junk"
	case VerdictReject:
		return "reject"
	}
	return "tempfail"
}

func (ss *session) storageFailure(qid, from string, err error) error {
	ss.log.Error("message not stored", "qid", qid, "from", from, "err", err)
	messagesRejected.WithLabelValues(reasonTempFailure).Inc()
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary storage failure, try again later")
}

// receivedHeader is the trace header of RFC 5321 4.4, with the TLS details
// Postfix also records.
func (ss *session) receivedHeader(qid string, rcpts []recipient, remote []store.RemoteRecipient, authenticated bool, now time.Time, st tls.ConnectionState, isTLS bool) string {
	proto := "ESMTP" // RFC 3848
	switch {
	case isTLS && authenticated:
		proto = "ESMTPSA"
	case authenticated:
		proto = "ESMTPA"
	case isTLS:
		proto = "ESMTPS"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s with %s id %s", sanitize(ss.conn.Hostname()), ss.ip, ss.s.cfg.Hostname, proto, qid)
	if isTLS {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	if len(rcpts) == 1 && len(remote) == 0 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitize(rcpts[0].address))
	} else if len(rcpts) == 0 && len(remote) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitize(remote[0].Address))
	}
	fmt.Fprintf(&b, "; %s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// sanitize keeps a client-supplied token printable and short for headers and logs.
func sanitize(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '(' || r == ')' || r == '<' || r == '>' || r == ';' {
			return '_'
		}
		return r
	}, s)
}

// defaultMaxReceived is Config.MaxReceived when it is 0 (Postfix's
// hopcount_limit is 50 too).
const defaultMaxReceived = 50

func (s *Server) maxReceived() int {
	if s.cfg.MaxReceived > 0 {
		return s.cfg.MaxReceived
	}
	return defaultMaxReceived
}

// countReceived counts Received: fields in a header section.
func countReceived(hdr []byte) int {
	n := 0
	for _, line := range bytes.Split(hdr, []byte("\r\n")) {
		if len(line) >= 9 && bytes.EqualFold(line[:9], []byte("received:")) {
			n++
		}
	}
	return n
}

// headerMessageID extracts the Message-ID header from a header section.
func headerMessageID(hdr []byte) string {
	if len(hdr) == 0 {
		return ""
	}
	if !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
		hdr = append(append([]byte{}, hdr...), "\r\n\r\n"...)
	}
	m, err := mail.ReadMessage(bytes.NewReader(hdr))
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(m.Header.Get("Message-Id"))
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	return sanitize(id)
}
