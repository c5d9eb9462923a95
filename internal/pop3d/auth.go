package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store"
)

// Answers to failed logins: one text whether the user is unknown or the
// password wrong (no account enumeration), with RFC 3206 codes.
const (
	errAuthFailed = "[AUTH] Invalid credentials"
	errNeedTLS    = "[AUTH] Plaintext authentication is not allowed before TLS; use STLS first"
	errInUse      = "[IN-USE] Another POP3 session of this user is active; try again later"
	errSysTemp    = "[SYS/TEMP] Internal error, try again later"
	// errRefused answers an IP in its cool-down after too many failed
	// logins: a temporary failure (RFC 3206 SYS/TEMP) that says nothing
	// about the account, so that clients do not ask for a new password.
	errRefused     = "[SYS/TEMP] Too many failed logins from your address, try again later"
	storeOpTimeout = time.Minute
)

// cmdCAPA lists the capabilities (RFC 2449 5). USER and SASL PLAIN appear
// only once TLS is up, STLS only before it, and none of the three after login.
func (ss *session) cmdCAPA(arg string) {
	if arg != "" {
		ss.fail("CAPA takes no argument")
		return
	}
	ss.reply("+OK Capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"} {
		ss.line(c)
	}
	if ss.state == stateAuthorization {
		if ss.tls {
			ss.line("USER")
			ss.line("SASL PLAIN")
		} else if ss.srv.cfg.TLS != nil {
			ss.line("STLS")
		}
	}
	ss.line(".")
}

// cmdSTLS starts TLS (RFC 2595 4). Anything the client sent behind STLS
// before the handshake is plaintext an attacker may have injected: it is
// discarded and the connection closed (RFC 2595 does not allow pipelining
// STLS, and the same hole was CVE-2011-0411 in SMTP).
func (ss *session) cmdSTLS(arg string) {
	switch {
	case ss.tls:
		ss.fail("TLS is already active")
		return
	case ss.srv.cfg.TLS == nil:
		ss.fail("STLS is not available")
		return
	case arg != "":
		ss.fail("STLS takes no argument")
		return
	case ss.br.Buffered() > 0:
		ss.log.Warn("pop3 data pipelined after STLS; closing the connection", "octets", ss.br.Buffered())
		ss.reply("-ERR Commands pipelined after STLS; closing the connection")
		ss.quit = true
		return
	}
	ss.reply("+OK Begin TLS negotiation")
	if err := ss.bw.Flush(); err != nil {
		ss.quit = true
		return
	}
	tc := tls.Server(ss.conn, ss.srv.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		ss.log.Debug("pop3 STLS handshake failed", "err", err)
		ss.quit = true
		return
	}
	ss.conn = tc
	ss.br = bufio.NewReaderSize(tc, 4096) // ss.bw writes to ss.conn
	ss.tls = true
	ss.userArg = "" // RFC 2595 4: forget what was said before TLS
}

// cmdUSER names the user for PASS (RFC 1939 7), after TLS only.
func (ss *session) cmdUSER(arg string) {
	if !ss.tls {
		ss.fail(errNeedTLS)
		return
	}
	if arg == "" {
		ss.fail("USER needs a user name")
		return
	}
	ss.userArg = arg
	ss.reply("+OK Send PASS")
}

// cmdPASS logs in the user named by USER. The password is everything after
// "PASS " (it may hold spaces).
func (ss *session) cmdPASS(arg string) {
	if !ss.tls {
		ss.fail(errNeedTLS)
		return
	}
	if ss.userArg == "" {
		ss.fail("Send USER first")
		return
	}
	user := ss.userArg
	ss.userArg = ""
	ss.login(user, arg)
}

// cmdAUTH runs SASL (RFC 5034). Only PLAIN (RFC 4616) is offered; the
// initial response may come with the command or after a "+ " prompt.
// "AUTH" alone lists the mechanisms, as many clients expect.
func (ss *session) cmdAUTH(arg string) {
	if !ss.tls {
		ss.fail(errNeedTLS)
		return
	}
	if arg == "" {
		ss.reply("+OK SASL mechanisms follow")
		ss.line("PLAIN")
		ss.line(".")
		return
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		ss.fail("Unsupported SASL mechanism; use PLAIN")
		return
	}
	if !hasIR {
		ss.reply("+ ")
		if err := ss.bw.Flush(); err != nil {
			ss.quit = true
			return
		}
		line, err := ss.readLine(maxAuthLine)
		if errors.Is(err, errLineTooLong) {
			ss.fail("SASL response too long")
			return
		}
		if err != nil {
			ss.quit = true
			return
		}
		ir = line
	}
	if ir == "*" { // RFC 5034 4: the client cancels
		ss.fail("AUTH cancelled")
		return
	}
	if ir == "=" { // a zero-length response
		ir = ""
	}
	dec, err := base64.StdEncoding.DecodeString(ir)
	if err != nil {
		ss.fail("Invalid base64 in SASL response")
		return
	}
	// authzid NUL authcid NUL passwd
	parts := strings.Split(string(dec), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		ss.fail("Malformed SASL PLAIN response")
		return
	}
	if parts[0] != "" && !strings.EqualFold(parts[0], parts[1]) {
		ss.fail("[AUTH] Authorization identity must be empty or the user itself")
		return
	}
	ss.login(parts[1], parts[2])
}

// login checks the password, takes the user's lock and snapshots INBOX.
// Failures look the same whatever failed, and are delayed and throttled.
func (ss *session) login(username, password string) {
	addr := strings.ToLower(strings.TrimSpace(username))
	th := ss.srv.cfg.Throttle
	failed := func() {
		logins.WithLabelValues("failed").Inc()
		if th.Failed(ss.ip, addr, password) {
			ss.log.Warn("too many failed logins: refusing this IP for the cool-down")
		}
		if d := th.FailWait(ss.srv.cfg.FailedLoginDelay, ss.ip, addr); d > 0 { // growing after repeated failures
			ss.bw.Flush()
			time.Sleep(d)
		}
		ss.fail(errAuthFailed)
	}
	release := th.Acquire(ss.ip) // one login of this IP at a time, waits included
	defer release()
	if th.Refused(ss.ip) {
		ss.log.Warn("pop3 login refused: too many failures from this IP", "user", addr)
		logins.WithLabelValues("refused").Inc()
		ss.fail(errRefused)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
	defer cancel()
	u, err := ss.srv.backend.UserByAddress(ctx, addr)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		ss.log.Error("pop3 login: looking up user", "user", addr, "err", err)
		logins.WithLabelValues("error").Inc()
		ss.fail(errSysTemp)
		return
	}
	hash := u.PasswordHash
	if !known {
		hash = ss.srv.dummyHash
	}
	ok, cerr := auth.CheckPassword(hash, password)
	if cerr != nil && known {
		ss.log.Error("pop3 login: checking password", "user", addr, "err", cerr)
	}
	if !known || !ok || cerr != nil {
		ss.log.Info("pop3 login failed", "user", addr)
		failed()
		return
	}
	// After repeated failures even a right password waits the growing
	// delay, so a guesser cannot hang up on slow answers to tell them apart.
	if d := th.Delay(ss.ip, addr); d > 0 {
		ss.bw.Flush()
		time.Sleep(d)
	}
	th.Succeeded(ss.ip, addr)
	release()
	if !ss.srv.lockUser(u.ID) {
		ss.log.Info("pop3 login refused: maildrop in use", "user", u.Address)
		logins.WithLabelValues("in_use").Inc()
		ss.fail(errInUse)
		return
	}
	drop, err := openMaildrop(ctx, ss.srv.backend, u.ID)
	if err != nil {
		ss.srv.unlockUser(u.ID)
		ss.log.Error("pop3 login: reading INBOX", "user", u.Address, "err", err)
		logins.WithLabelValues("error").Inc()
		ss.fail(errSysTemp)
		return
	}
	logins.WithLabelValues("ok").Inc()
	ss.user, ss.drop = &u, drop
	ss.state = stateTransaction
	ss.log = ss.log.With("user", u.Address)
	ss.log.Info("pop3 login", "messages", len(drop.msgs), "size", drop.total)
	ss.reply("+OK Logged in, %d messages (%d octets)", len(drop.msgs), drop.total)
}
