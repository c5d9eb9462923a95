package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

// maxCommandLine is the longest command line, CRLF included (RFC 2449 4).
const maxCommandLine = 255

// maxAuthLine is the longest SASL response line: RFC 5034 4 lifts the
// command limit for them; PLAIN needs little.
const maxAuthLine = 4096

// state is where a session is in RFC 1939's state machine.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// session is one POP3 connection.
type session struct {
	srv   *Server
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	ip    string
	log   *slog.Logger
	tls   bool
	state state
	errs  int  // -ERR answers so far
	quit  bool // close after the current response

	userArg string      // from USER, waiting for PASS
	user    *store.User // set on login, with the user's lock held
	drop    *maildrop   // the snapshot, in the transaction state
}

// connWriter writes to the session's connection (plain, or TLS after
// STLS) and gives every write IdleTimeout to complete: a slow client
// downloading a large message is not cut off, a stalled one is.
type connWriter struct{ ss *session }

func (w connWriter) Write(p []byte) (int, error) {
	w.ss.conn.SetWriteDeadline(time.Now().Add(w.ss.srv.cfg.IdleTimeout))
	return w.ss.conn.Write(p)
}

// errLineTooLong is returned by readLine for an over-long line (the rest
// of which has been discarded).
var errLineTooLong = errors.New("line too long")

// handle runs one connection to its end. A panic is logged and ends this
// connection alone.
func (s *Server) handle(conn net.Conn, ip string, implicitTLS bool) {
	ss := &session{
		srv: s, conn: conn, ip: ip, tls: implicitTLS,
		br:  bufio.NewReaderSize(conn, 4096),
		log: s.log.With("ip", ip),
	}
	ss.bw = bufio.NewWriterSize(connWriter{ss}, 32<<10)
	defer func() {
		if r := recover(); r != nil {
			panics.Inc()
			ss.srv.panics.Add(1)
			ss.log.Error("pop3 session panic", "panic", r, "stack", string(debug.Stack()))
		}
		ss.end()
	}()
	conn.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	if tc, ok := conn.(interface{ Handshake() error }); ok {
		if err := tc.Handshake(); err != nil {
			ss.log.Debug("pop3 tls handshake failed", "err", err)
			return
		}
	}
	if s.cfg.Throttle.Refused(ip) {
		// Like mox's BYE in IMAP: an IP in its cool-down after too many
		// failed logins is told why and closed, before the greeting.
		ss.log.Warn("pop3 connection refused: too many failed logins from this IP")
		logins.WithLabelValues("refused").Inc()
		ss.reply("-ERR %s", errRefused)
		ss.bw.Flush()
		return
	}
	// RFC 1939 4: the greeting. No APOP timestamp (APOP is not offered)
	// and no software name.
	ss.reply("+OK POP3 server ready")
	ss.bw.Flush()
	ss.loop()
}

// end releases what the session holds. Without QUIT nothing is deleted.
func (ss *session) end() {
	if ss.user != nil { // set only with the user's lock held
		ss.srv.unlockUser(ss.user.ID)
		ss.user, ss.drop = nil, nil
	}
	ss.conn.Close()
}

// loop reads and answers commands until QUIT, an error or a timeout.
// Answers are buffered and flushed when no pipelined command is waiting.
func (ss *session) loop() {
	for !ss.quit {
		ss.conn.SetReadDeadline(time.Now().Add(ss.srv.cfg.IdleTimeout))
		line, err := ss.readLine(maxCommandLine)
		if errors.Is(err, errLineTooLong) {
			ss.fail("Command line too long (at most %d octets)", maxCommandLine)
		} else if err != nil {
			ss.bw.Flush()
			if ss.state == stateTransaction {
				sessionsDropped.Inc()
				ss.log.Info("pop3 connection lost; nothing deleted", "err", err)
			}
			return
		} else {
			ss.command(line)
		}
		if ss.errs >= ss.srv.cfg.MaxErrors && !ss.quit {
			ss.reply("-ERR Too many errors, closing the connection")
			ss.quit = true
		}
		if ss.br.Buffered() == 0 || ss.quit {
			if err := ss.bw.Flush(); err != nil {
				return
			}
		}
	}
}

// readLine reads one line of at most max octets (CRLF included) and
// returns it without its line end. A longer line is read to its end and
// dropped, and errLineTooLong returned.
func (ss *session) readLine(max int) (string, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := ss.br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max {
				tooLong = true
				buf = nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return "", errLineTooLong
			}
			buf = bytes.TrimSuffix(buf[:len(buf)-1], []byte("\r"))
			return string(buf), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return "", err
		}
	}
}

// reply writes one formatted response line.
func (ss *session) reply(format string, args ...any) {
	fmt.Fprintf(ss.bw, format, args...)
	ss.bw.WriteString("\r\n")
}

// line writes one response line as is.
func (ss *session) line(s string) {
	ss.bw.WriteString(s)
	ss.bw.WriteString("\r\n")
}

// fail answers -ERR and counts an error.
func (ss *session) fail(format string, args ...any) {
	ss.errs++
	ss.reply("-ERR "+format, args...)
}

// command is one command's handler; arg is what follows the keyword.
type command struct {
	states []state
	run    func(ss *session, arg string)
}

var commands map[string]command

func init() {
	auth := []state{stateAuthorization}
	trans := []state{stateTransaction}
	both := []state{stateAuthorization, stateTransaction}
	commands = map[string]command{
		"CAPA": {both, (*session).cmdCAPA},
		"QUIT": {both, (*session).cmdQUIT},
		"NOOP": {trans, (*session).cmdNOOP},
		"STLS": {auth, (*session).cmdSTLS},
		"USER": {auth, (*session).cmdUSER},
		"PASS": {auth, (*session).cmdPASS},
		"AUTH": {auth, (*session).cmdAUTH},
		"APOP": {auth, func(ss *session, _ string) { ss.fail("APOP is not supported; use USER/PASS or AUTH PLAIN after STLS") }},
		"STAT": {trans, (*session).cmdSTAT},
		"LIST": {trans, (*session).cmdLIST},
		"UIDL": {trans, (*session).cmdUIDL},
		"RETR": {trans, (*session).cmdRETR},
		"TOP":  {trans, (*session).cmdTOP},
		"DELE": {trans, (*session).cmdDELE},
		"RSET": {trans, (*session).cmdRSET},
	}
}

// command dispatches one command line (RFC 1939 3: a case-insensitive
// keyword, then arguments separated by single spaces).
func (ss *session) command(line string) {
	kw, arg, _ := strings.Cut(line, " ")
	kw = strings.ToUpper(kw)
	if kw == "PASS" || kw == "AUTH" {
		ss.log.Debug("pop3 command", "cmd", kw, "arg", "(redacted)")
	} else {
		ss.log.Debug("pop3 command", "line", line)
	}
	c, ok := commands[kw]
	if !ok {
		if kw == "" {
			ss.fail("Empty command")
		} else {
			ss.fail("Unknown command")
		}
		return
	}
	for _, st := range c.states {
		if st == ss.state {
			c.run(ss, arg)
			return
		}
	}
	if ss.state == stateAuthorization {
		ss.fail("%s is only valid after login", kw)
	} else {
		ss.fail("%s is only valid before login", kw)
	}
}

// cmdQUIT ends the session; in the transaction state it first enters the
// UPDATE state and removes the messages marked for deletion (RFC 1939 6).
func (ss *session) cmdQUIT(arg string) {
	ss.quit = true
	if ss.state != stateTransaction {
		ss.reply("+OK Bye")
		return
	}
	ss.update()
}

// cmdNOOP does nothing (RFC 1939 5).
func (ss *session) cmdNOOP(arg string) {
	if arg != "" {
		ss.fail("NOOP takes no argument")
		return
	}
	ss.reply("+OK")
}
