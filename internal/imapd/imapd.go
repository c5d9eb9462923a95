// Package imapd is Postern's IMAP server (IMAP4rev2, RFC 9051, and
// IMAP4rev1, RFC 3501) on emersion/go-imap/v2's imapserver.
//
// The protocol layer (parsing, response encoding) is go-imap's; this
// package implements its Session against a small Backend interface that it
// owns, so that the store stays free of IMAP and the protocol layer could be
// replaced without touching the store. One file per command group:
// session.go (login, state), mailboxes.go (CREATE, DELETE, RENAME,
// SUBSCRIBE, LIST, STATUS, NAMESPACE), selected.go (SELECT, the session's
// view of sequence numbers, live updates for IDLE and after each command),
// fetch.go, mime.go (BODYSTRUCTURE, BINARY), envelope.go (ENVELOPE and
// address parsing), flags.go (STORE), search.go, copy.go (COPY, MOVE,
// EXPUNGE), append.go, limit.go (connections, idle timeout).
//
// Where go-imap leaves the protocol to the backend, this package follows
// Dovecot's behaviour (as Dovecot's imaptest checks it): \Recent belongs to
// the first session that sees a message (claims kept in memory, so after a
// restart the messages present are recent once more), keywords are
// announced with FLAGS before any answer shows them, mailboxes that exist
// only as parents of others are listed as \Noselect, and subscriptions
// outlive their mailboxes.
//
// Live updates: the store publishes every committed change (new message,
// flag change, expunge) to a store.Broadcaster; a session that has a
// mailbox selected subscribes to it and turns changes into EXISTS, FETCH
// FLAGS and EXPUNGE responses at the next command or at once while IDLE.
package imapd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store"
)

// Backend is what the IMAP server needs from storage.
type Backend interface {
	UserByAddress(ctx context.Context, address string) (store.User, error)

	Mailboxes(ctx context.Context, userID int64) ([]store.Mailbox, error)
	MailboxByName(ctx context.Context, userID int64, name string) (store.Mailbox, error)
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (store.Mailbox, error)
	DeleteMailbox(ctx context.Context, userID int64, name string) error
	RenameMailbox(ctx context.Context, userID int64, oldName, newName string) error
	SetSubscribed(ctx context.Context, userID int64, name string, subscribed bool) error
	Subscriptions(ctx context.Context, userID int64) ([]string, error)
	MailboxKeywords(ctx context.Context, mailboxID int64) ([]string, error)

	UIDs(ctx context.Context, mailboxID int64) ([]uint32, error)
	FirstUnseen(ctx context.Context, mailboxID int64) (uint32, error)
	EntriesByUID(ctx context.Context, mailboxID int64, uids []uint32) ([]store.Entry, error)
	OpenEntry(ctx context.Context, mailboxID int64, uid uint32) (io.ReadCloser, error)
	UpdateFlags(ctx context.Context, mailboxID int64, uids []uint32, u store.FlagUpdate) ([]store.FlagResult, error)
	Expunge(ctx context.Context, mailboxID int64, uids []uint32) (uint64, error)
	NewBlob() (store.BlobWriter, error)
	AppendMessage(ctx context.Context, mailboxID int64, a *store.Append) (uid, uidValidity uint32, err error)
	CopyMessages(ctx context.Context, src int64, uids []uint32, dst int64) (store.CopyResult, error)
	MoveMessages(ctx context.Context, src int64, uids []uint32, dst int64) (store.CopyResult, error)
	Changes() *store.Broadcaster
}

// Config is the IMAP server's configuration.
type Config struct {
	TLS                 *tls.Config // for STARTTLS and the implicit-TLS listener
	MaxConnections      int         // in all; 0: unlimited
	MaxConnectionsPerIP int         // 0: unlimited
	MaxMessageBytes     int64       // APPENDLIMIT; a larger literal gets NO [TOOBIG] before its continuation
	// MaxLineLength bounds a command's text (with its CRLF, literal data
	// not counted); a longer one gets BAD [TOOBIG] and the connection is
	// closed. 0: DefaultMaxLineLength.
	MaxLineLength int64
	// MaxLiteralSize bounds the literals of a command other than APPEND,
	// added up (held in memory); one that would cross it gets NO [TOOBIG]
	// before the continuation (BAD and the connection closed if
	// non-synchronizing).
	// 0: DefaultMaxLiteralSize.
	MaxLiteralSize int64
	// IdleTimeout ends a session that sends nothing (also in IDLE) for
	// that long; 0 keeps go-imap's 35 minutes (RFC 9051 5.4: at least 30).
	IdleTimeout time.Duration
	// FailedLoginDelay is added before answering a failed login.
	FailedLoginDelay time.Duration
	// Throttle refuses logins after repeated failures per IP and account;
	// share one with the other protocols. Nil: a private default one.
	Throttle *auth.Throttle
	// Logins caches recent successful password checks; nil: none.
	Logins *auth.Cache
	Logger *slog.Logger
	// Debug, if set, receives the raw protocol (including passwords: tests only).
	Debug io.Writer
}

// Defaults of the limits in Config; Dovecot's imap_max_line_length is
// also 64 KiB; RFC 2683 3.2.1.5 asks servers to accept at least 8 KiB.
const (
	DefaultMaxLineLength  = 64 << 10
	DefaultMaxLiteralSize = 64 << 10
)

// Caps are the capabilities Postern advertises beyond what go-imap adds by
// itself (SASL-IR, LITERAL-, ENABLE, IDLE, UNSELECT, UTF8=ACCEPT, STARTTLS,
// AUTH=PLAIN or LOGINDISABLED, and APPENDLIMIT=n from the session). Each
// is implemented by this package.
var Caps = imap.CapSet{
	imap.CapIMAP4rev2:        {},
	imap.CapIMAP4rev1:        {},
	imap.CapNamespace:        {},
	imap.CapUIDPlus:          {},
	imap.CapESearch:          {},
	imap.CapSearchRes:        {},
	imap.CapListExtended:     {},
	imap.CapListStatus:       {},
	imap.CapMove:             {},
	imap.CapStatusSize:       {},
	imap.CapBinary:           {},
	imap.CapChildren:         {},
	imap.CapSpecialUse:       {},
	imap.CapCreateSpecialUse: {},
	imap.CapLiteralPlus:      {},
}

// Server serves IMAP on any number of listeners.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	imap    *imapserver.Server // plain listeners: STARTTLS, no auth before TLS
	limiter *connLimiter

	dummyHash string // checked for unknown users, so that they cost as much as a wrong password

	recentMu sync.Mutex
	recent   map[int64]uint32 // mailbox ID: highest UID already claimed as \Recent

	heads headCache // header fields for SEARCH
}

// New returns a server; call Serve or ServeTLS for each listener.
func New(cfg Config, backend Backend) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Throttle == nil {
		cfg.Throttle = auth.NewThrottle()
	}
	if cfg.MaxMessageBytes <= 0 || cfg.MaxMessageBytes > 1<<32-1 {
		cfg.MaxMessageBytes = 50 << 20
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if cfg.MaxLiteralSize <= 0 {
		cfg.MaxLiteralSize = DefaultMaxLiteralSize
	}
	s := &Server{
		cfg: cfg, backend: backend, log: cfg.Logger,
		limiter: newConnLimiter(cfg.MaxConnections, cfg.MaxConnectionsPerIP),
		recent:  map[int64]uint32{},
	}
	s.dummyHash, _ = auth.HashPassword(auth.RandomPassword())
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:  s.newSession,
		Caps:        Caps,
		Logger:      slogPrintf{s.log},
		TLSConfig:   cfg.TLS,
		DebugWriter: cfg.Debug,

		MaxLineLength:  cfg.MaxLineLength,
		MaxLiteralSize: cfg.MaxLiteralSize,
	})
	return s
}

type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, "use of closed network connection") || strings.Contains(msg, "connection reset by peer") {
		p.l.Debug(msg) // a client or the shutdown closed the connection
		return
	}
	p.l.Warn(msg)
}

// Serve accepts plain connections on l (STARTTLS offered; LOGIN and
// AUTHENTICATE refused until TLS: LOGINDISABLED, RFC 9051 6.2.3).
func (s *Server) Serve(l net.Listener) error {
	return s.imap.Serve(s.limiter.wrap(l, true, s.cfg.IdleTimeout))
}

// ServeTLS accepts implicit-TLS connections on l (port 993, RFC 8314).
func (s *Server) ServeTLS(l net.Listener) error {
	return s.imap.Serve(tls.NewListener(s.limiter.wrap(l, false, s.cfg.IdleTimeout), s.cfg.TLS))
}

// Close stops the listeners and closes every connection.
func (s *Server) Close() error {
	return s.imap.Close()
}

// claimRecent marks UIDs up to upto as no longer new and returns the highest
// UID claimed before: the UIDs above it are \Recent for the caller alone
// (RFC 3501 2.3.2). Claims live in memory: after a restart the messages
// present are \Recent to the first session that selects their mailbox.
func (s *Server) claimRecent(mailboxID int64, upto uint32) uint32 {
	s.recentMu.Lock()
	defer s.recentMu.Unlock()
	prev := s.recent[mailboxID]
	if upto > prev {
		s.recent[mailboxID] = upto
	}
	return prev
}
