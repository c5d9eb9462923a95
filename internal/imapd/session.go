package imapd

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/connlimit"
	"github.com/postern-mail/postern/internal/store"
)

// session is one IMAP connection's state.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	ip   string
	user *store.User // nil until login

	// sel is the selected mailbox (nil if none). Go-imap runs Idle in a
	// goroutine of its own and does not always wait for it (a read error
	// or a bad DONE ends IDLE at once), so the IDLE goroutine and the
	// command goroutine hand sel over under mu, and commands first wait
	// for a running Idle to end.
	mu       sync.Mutex
	sel      *selected
	idleDone chan struct{} // closed when the running Idle returns
}

// selected waits for any IDLE to finish and returns the selected mailbox.
func (s *session) selected() *selected {
	s.mu.Lock()
	done := s.idleDone
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sel
}

// setSelected replaces the selected mailbox, closing the previous one.
func (s *session) setSelected(sel *selected) {
	old := s.selected()
	s.mu.Lock()
	s.sel = sel
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)
var _ imapserver.SessionAppendLimit = (*session)(nil)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ip := connlimit.RemoteIP(c.NetConn().RemoteAddr())
	if s.cfg.Throttle.Refused(ip) {
		// Like mox: an IP in its cool-down after too many failed logins
		// gets a BYE greeting (RFC 9051 7.1.5) and is closed.
		s.log.Warn("imap connection refused: too many failed logins from this IP", "ip", ip)
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable,
			Text: "Too many failed logins from your address, try again later"}
	}
	return &session{srv: s, conn: c, ip: ip}, nil, nil
}

// logger returns the server's logger with the session's client and user
// (built when something is logged: idle sessions keep no logger of their
// own).
func (s *session) logger() *slog.Logger {
	if s.user != nil {
		return s.srv.log.With("ip", s.ip, "user", s.user.Address)
	}
	return s.srv.log.With("ip", s.ip)
}

// ctx is the context of store calls made for a command.
func (s *session) ctx() context.Context { return context.Background() }

// Close ends the session (connection closed or LOGOUT).
func (s *session) Close() error {
	s.setSelected(nil)
	return nil
}

// errLogin is the one answer to every failed login, whether the user is
// unknown or the password wrong (no account enumeration).
var errLogin = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Invalid credentials",
}

// errRefused answers a login from an IP in its cool-down after too many
// failed logins: a temporary failure that says nothing about the account
// (RFC 5530 UNAVAILABLE), so that clients do not ask for a new password.
var errRefused = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeUnavailable,
	Text: "Too many failed logins from your address, try again later",
}

// Login checks the password with argon2id against the account's hash. Go-imap
// calls it only after TLS (LOGIN and AUTHENTICATE PLAIN).
func (s *session) Login(username, password string) error {
	addr := strings.ToLower(strings.TrimSpace(username))
	th := s.srv.cfg.Throttle
	fail := func() error {
		if th.Failed(s.ip, addr, password) {
			s.logger().Warn("too many failed logins: refusing this IP for the cool-down")
		}
		if d := th.FailWait(s.srv.cfg.FailedLoginDelay, s.ip, addr); d > 0 { // growing after repeated failures
			time.Sleep(d)
		}
		return errLogin
	}
	defer th.Acquire(s.ip)() // one login of this IP at a time, waits included
	if th.Refused(s.ip) {
		s.logger().Warn("imap login refused: too many failures from this IP", "user", addr)
		return errRefused
	}
	u, err := s.srv.backend.UserByAddress(s.ctx(), addr)
	hash := u.PasswordHash
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.logger().Error("imap login: looking up user", "user", addr, "err", err)
		return internalError
	}
	if !known {
		hash = s.srv.dummyHash
	}
	check := auth.CheckPassword
	if c := s.srv.cfg.Logins; c != nil && known {
		check = c.Check
	}
	ok, cerr := check(hash, password)
	if cerr != nil && known {
		s.logger().Error("imap login: checking password", "user", addr, "err", cerr)
	}
	if !known || !ok || cerr != nil {
		s.logger().Info("imap login failed", "user", addr)
		return fail()
	}
	// After repeated failures even a right password waits the growing
	// delay, so a guesser cannot hang up on slow answers to tell them apart.
	if d := th.Delay(s.ip, addr); d > 0 {
		time.Sleep(d)
	}
	th.Succeeded(s.ip, addr)
	s.user = &u
	s.logger().Info("imap login")
	return nil
}

// updateWriter returns a writer for untagged updates outside Poll and
// Idle. Go-imap hands one only to those, but a FETCH or STORE answer must
// be preceded by FLAGS when it shows a keyword the client has not seen;
// the writer is go-imap's own, pointed at this connection. Nil if
// go-imap's layout changed (the tests notice: announcements then come
// after the answer).
func (s *session) updateWriter() *imapserver.UpdateWriter {
	w := &imapserver.UpdateWriter{}
	f := reflect.ValueOf(w).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeOf(s.conn) {
		return nil
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(s.conn))
	return w
}

// AppendLimit is the largest message APPEND accepts (RFC 7889).
func (s *session) AppendLimit() uint32 { return uint32(s.srv.cfg.MaxMessageBytes) }

// Namespace has one personal namespace with "/" as delimiter (RFC 2342).
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: store.HierarchyDelim}}}, nil
}

var internalError = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeServerBug,
	Text: "Internal error, try again later",
}

// storeError turns a store error into the IMAP answer; details go to the log.
func (s *session) storeError(op string, err error) error {
	var ie *imap.Error
	switch {
	case errors.As(err, &ie):
		return err
	case errors.Is(err, store.ErrNotFound):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, store.ErrExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, store.ErrBadName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, store.ErrInUse):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Not allowed for this mailbox"}
	}
	s.logger().Error("imap "+op, "err", err)
	return internalError
}

func noMailbox() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
}

func readOnlyError() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox is read-only (EXAMINE)"}
}
