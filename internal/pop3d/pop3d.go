// Package pop3d is Postern's POP3 server (RFC 1939), our own small one:
// there is no maintained Go library worth building on, and the protocol is
// a few hundred lines.
//
// What it speaks: USER/PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP
// and UIDL (RFC 1939); CAPA (RFC 2449) with TOP, UIDL, RESP-CODES,
// AUTH-RESP-CODE, PIPELINING, EXPIRE NEVER and, once TLS is up, USER and
// SASL PLAIN; STLS (RFC 2595); AUTH PLAIN with an initial response (RFC
// 5034). APOP is not offered (it needs plaintext passwords on the server),
// nor IMPLEMENTATION (it tells an attacker what to look up).
//
// Security: no USER, PASS or AUTH before TLS; one answer for an unknown
// user and a wrong password ("-ERR [AUTH]"), after a fixed delay, with
// failures counted in an auth.Throttle shared with IMAP and SMTP; plaintext
// pipelined behind STLS is discarded and the connection closed; command
// lines are limited to 255 octets (RFC 2449 4); too many errors close the
// connection; a panic in a session closes that connection alone.
//
// The maildrop is the user's INBOX as it was at login (RFC 1939 says a
// session sees a fixed set of messages; later arrivals wait for the next
// session). One session per user at a time: a second gets "-ERR [IN-USE]".
// DELE only marks; the marked messages are expunged through the store after
// QUIT (the UPDATE state), which publishes the expunges to IMAP sessions
// live. A connection that drops, times out or is closed deletes nothing.
//
// Files: pop3d.go (server, listeners, limits), session.go (the command
// loop and line handling), auth.go (CAPA, STLS, USER/PASS, AUTH PLAIN),
// maildrop.go (the transaction and update states), message.go (dot-stuffed
// output of RETR and TOP).
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/connlimit"
	"github.com/postern-mail/postern/internal/store"
)

// Backend is what the POP3 server needs from storage.
type Backend interface {
	UserByAddress(ctx context.Context, address string) (store.User, error)
	MailboxByName(ctx context.Context, userID int64, name string) (store.Mailbox, error)
	Entries(ctx context.Context, mailboxID int64) ([]store.Entry, error)
	OpenEntry(ctx context.Context, mailboxID int64, uid uint32) (io.ReadCloser, error)
	Expunge(ctx context.Context, mailboxID int64, uids []uint32) (uint64, error)
}

// Config is the POP3 server's configuration. Zero values get safe defaults.
type Config struct {
	TLS                 *tls.Config // for STLS and the implicit-TLS listener; nil: no STLS
	MaxConnections      int         // in all; 0: unlimited
	MaxConnectionsPerIP int         // 0: unlimited
	// IdleTimeout closes a connection that sends no command for this long
	// (RFC 1939 3 asks for at least 10 minutes); 0: 10 minutes.
	IdleTimeout time.Duration
	// FailedLoginDelay is waited before answering a failed login; 0: none.
	FailedLoginDelay time.Duration
	// MaxErrors is how many -ERR answers a connection gets before it is
	// closed; 0: 10.
	MaxErrors int
	// Throttle refuses logins after repeated failures per IP and account;
	// share one with the other protocols. Nil: a private default one.
	Throttle *auth.Throttle
	Logger   *slog.Logger
}

// Server serves POP3 on any number of listeners.
type Server struct {
	cfg       Config
	backend   Backend
	log       *slog.Logger
	limiter   *connlimit.Counter
	dummyHash string // checked for unknown users, so that they cost as much as a wrong password

	mu        sync.Mutex
	inUse     map[int64]bool // user IDs with a session in the transaction state
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	closed    bool
	wg        sync.WaitGroup
	panics    atomic.Int64 // sessions ended by a recovered panic (for tests)
}

// ErrServerClosed is returned by Serve and ServeTLS after Close.
var ErrServerClosed = errors.New("pop3d: server closed")

// New returns a server; call Serve or ServeTLS for each listener.
func New(cfg Config, backend Backend) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Throttle == nil {
		cfg.Throttle = auth.NewThrottle()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 10
	}
	s := &Server{
		cfg: cfg, backend: backend, log: cfg.Logger,
		limiter:   connlimit.New(cfg.MaxConnections, cfg.MaxConnectionsPerIP),
		inUse:     map[int64]bool{},
		listeners: map[net.Listener]bool{},
		conns:     map[net.Conn]bool{},
	}
	s.dummyHash, _ = auth.HashPassword(auth.RandomPassword())
	return s
}

// Serve accepts plain connections on l: STLS is offered, and no login is
// possible until TLS is up (RFC 2595 2.1, RFC 8314).
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections on l (port 995, RFC 8314).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("pop3d: ServeTLS without a TLS config")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		connectionsTotal.Inc()
		ip := connlimit.RemoteIP(conn.RemoteAddr())
		if s.limiter.Acquire(ip) != connlimit.OK {
			connectionsRefused.Inc()
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, "-ERR [SYS/TEMP] Too many connections, try again later\r\n")
			conn.Close()
			continue
		}
		if !s.track(conn) {
			s.limiter.Release(ip)
			conn.Close()
			return ErrServerClosed
		}
		connectionsActive.Inc()
		go func() {
			defer s.wg.Done()
			defer connectionsActive.Dec()
			defer s.limiter.Release(ip)
			defer s.untrack(conn)
			if implicitTLS {
				conn = tls.Server(conn, s.cfg.TLS)
			}
			s.handle(conn, ip, implicitTLS)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a connection for Close; false if the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = true
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops the listeners and closes every connection: sessions still in
// the transaction state end without deleting anything. It waits for the
// session goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// lockUser marks a user as having a session; false if one exists already.
func (s *Server) lockUser(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inUse[id] {
		return false
	}
	s.inUse[id] = true
	return true
}

func (s *Server) unlockUser(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inUse, id)
}
