package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern-mail/postern/internal/auth"
)

// Config is what the SMTP server needs to know.
type Config struct {
	Hostname            string
	TLS                 *tls.Config // nil: no STARTTLS
	MaxMessageBytes     int64
	MaxRecipients       int
	MaxConnections      int
	MaxConnectionsPerIP int
	MaxLineLength       int
	CommandTimeout      time.Duration
	DataTimeout         time.Duration
	Logger              *slog.Logger

	// Checker authenticates senders on the MX (not for authenticated
	// sessions); nil: no checks. Incoming Authentication-Results fields
	// claiming Hostname as authserv-id are dropped on the MX either way.
	Checker Checker

	// Submission makes this a submission server (587/465): AUTH required
	// (offered only under TLS), relaying to any domain for the
	// authenticated user, DSN parameters honoured.
	Submission bool
	// Throttle counts failed logins per IP and account (shared with IMAP
	// and POP3); an IP in its cool-down is refused on the submission
	// listeners. Nil: no throttling.
	Throttle *auth.Throttle
	// AuthFailDelay is slept (plus jitter, plus the throttle's growing
	// delay) before answering each failed AUTH.
	AuthFailDelay time.Duration

	// Address harvesting defence for unauthenticated sessions (zero
	// disables each): after UnknownRcptDelayAfter unknown recipients in a
	// connection every further RCPT reply, known or unknown, waits
	// UnknownRcptDelay times the excess; beyond UnknownRcptMax the
	// connection gets 421 and is closed; beyond UnknownRcptPerIP unknown
	// recipients from one IP within UnknownRcptWindow, that IP gets 421 for
	// UnknownRcptCooldown.
	UnknownRcptDelayAfter int
	UnknownRcptDelay      time.Duration
	UnknownRcptMax        int
	UnknownRcptPerIP      int
	UnknownRcptWindow     time.Duration
	UnknownRcptCooldown   time.Duration
	// RcptJitter adds a random wait of up to this long to every RCPT
	// reply of an unauthenticated session, known recipient or not, so
	// that lookup timing does not tell users apart; 0: none.
	RcptJitter time.Duration

	// DisableVRFY answers VRFY with 502 5.5.1 like EXPN; otherwise VRFY
	// gets 252 2.5.2 for every name. Either way real and fake users get
	// the same answer.
	DisableVRFY bool

	// LocalIPLiterals are the server's own addresses: a recipient
	// user@[one of them] (or [IPv6:...]) is delivered as user@ the primary
	// domain (the host name or its nearest hosted parent). Empty: every
	// address-literal recipient is refused on the MX as relaying (554
	// 5.7.1), and queued like a remote one on submission.
	LocalIPLiterals []netip.Addr

	// MaxReceived is the most Received: fields a message may carry, ours
	// included, before it is refused as a mail loop with 554 5.4.6 (RFC
	// 5321 6.3); 0: 50.
	MaxReceived int
}

// Server is an MX SMTP server.
type Server struct {
	cfg Config
	be  Backend
	log *slog.Logger
	srv *smtp.Server

	probes *probeGuard // nil: no per-IP probing limit

	mu        sync.Mutex
	listeners []net.Listener
}

// New returns an SMTP server on be.
func New(cfg Config, be Backend) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, be: be, log: cfg.Logger}
	if cfg.UnknownRcptPerIP > 0 {
		s.probes = newProbeGuard(cfg.UnknownRcptPerIP, cfg.UnknownRcptWindow, cfg.UnknownRcptCooldown)
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = cfg.CommandTimeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = cfg.Submission
	srv.DisableVRFY = cfg.DisableVRFY
	srv.ErrorLog = slogAdapter{s.log}
	s.srv = srv
	return s
}

// Serve accepts connections on l until Shutdown; connection limits apply
// per listener.
func (s *Server) Serve(l net.Listener) error {
	ll := newLimitListener(l, s.cfg.Hostname, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP)
	ll.blocked = s.probes.blocked
	err := s.srv.Serve(s.refuseAuthFailures(ll))
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ServeTLS is Serve for implicit TLS (submissions, port 465). The TLS
// layer goes over the connection limits, not under them, so that go-smtp
// sees a *tls.Conn: it then offers AUTH and records TLS in Received.
func (s *Server) ServeTLS(l net.Listener, config *tls.Config) error {
	ll := newLimitListener(l, s.cfg.Hostname, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP)
	ll.blocked = s.probes.blocked
	err := s.srv.Serve(s.refuseAuthFailures(tls.NewListener(ll, config)))
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets sessions in flight finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.srv.Close()
		return nil
	}
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// slogAdapter sends go-smtp's internal errors to slog at debug level
// (they are per-connection I/O errors, not server faults).
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...interface{}) {
	a.l.Debug("smtp", "detail", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (a slogAdapter) Println(v ...interface{}) {
	a.l.Debug("smtp", "detail", strings.TrimSpace(fmt.Sprintln(v...)))
}
