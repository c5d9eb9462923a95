// Package store is Postern's domain model and the interface between the
// protocol servers and durable storage: domains, accounts, aliases,
// mailboxes, messages and message events.
//
// Protocol packages never see SQL; a backend (internal/store/sqlite today,
// PostgreSQL later) implements Store. The durability contract every backend
// keeps: when Deliver returns nil, the message contents and every mailbox
// entry it creates survive a crash of the process or the machine, and a
// message that Deliver did not acknowledge is never visible.
//
// Mailboxes carry what IMAP needs: UIDVALIDITY, UIDNEXT (UIDs are never
// reused), a HIGHESTMODSEQ bumped on every flag change and expunge (RFC 7162),
// and counts kept incrementally. A message is stored once, however many
// local recipients it has; each mailbox entry keeps a small per-recipient
// header prefix (Return-Path, Delivered-To) that is prepended when read.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors a backend returns, testable with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInUse    = errors.New("still in use")
	ErrBadName  = errors.New("bad mailbox name")
)

// HierarchyDelim separates the levels of mailbox names ("Archive/2026").
const HierarchyDelim = '/'

// Domain is a mail domain hosted here.
type Domain struct {
	Name    string
	Created time.Time
}

// User is a mail account; Address is its canonical lower-case address.
type User struct {
	ID           int64
	Address      string
	PasswordHash string
	Created      time.Time
}

// Alias maps one address to one or more target addresses.
type Alias struct {
	Address string
	Targets []string
}

// Special-use mailbox attributes (RFC 6154).
const (
	SpecialDrafts  = `\Drafts`
	SpecialSent    = `\Sent`
	SpecialTrash   = `\Trash`
	SpecialJunk    = `\Junk`
	SpecialArchive = `\Archive`
)

// DefaultMailboxes are created with every user, with their special use.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""},
	{"Drafts", SpecialDrafts},
	{"Sent", SpecialSent},
	{"Trash", SpecialTrash},
	{"Junk", SpecialJunk},
	{"Archive", SpecialArchive},
}

// Mailbox is a folder of one user.
type Mailbox struct {
	ID            int64
	UserID        int64
	Name          string
	SpecialUse    string
	Subscribed    bool
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      uint32
	Unseen        uint32
	Size          int64
}

// Flags is the set of system flags of a mailbox entry, as bits.
type Flags uint32

// System flags (RFC 9051 2.3.2).
const (
	FlagSeen Flags = 1 << iota
	FlagAnswered
	FlagFlagged
	FlagDeleted
	FlagDraft
)

// Entry is one message in one mailbox.
type Entry struct {
	MailboxID    int64
	UID          uint32
	MessageID    int64 // the stored message (shared between entries)
	QueueID      string
	From         string // envelope sender of the stored message
	Flags        Flags
	Keywords     []string
	ModSeq       uint64
	InternalDate time.Time
	Size         int64 // size as read: prefix plus stored message
}

// FlagOp says how UpdateFlags combines the given flags with the current ones.
type FlagOp int

// Flag operations (RFC 9051 6.4.6: FLAGS, +FLAGS, -FLAGS).
const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// FlagUpdate is a change of system flags and keywords.
type FlagUpdate struct {
	Op       FlagOp
	Flags    Flags
	Keywords []string
	Origin   any // passed through to the published Change
}

// FlagResult is the state of one message after UpdateFlags changed it.
type FlagResult struct {
	UID      uint32
	Flags    Flags
	Keywords []string
	ModSeq   uint64
}

// Append is a message added to a mailbox by a client (IMAP APPEND).
type Append struct {
	Blob         BlobWriter // finished contents from NewBlob
	Flags        Flags
	Keywords     []string
	InternalDate time.Time // zero: now
}

// CopyResult maps source UIDs to the new UIDs in the target (RFC 4315 COPYUID).
type CopyResult struct {
	UIDValidity uint32
	SourceUIDs  []uint32
	DestUIDs    []uint32
}

// Event is one step in a message's journey (postern trace).
type Event struct {
	QueueID string
	Time    time.Time
	Kind    string // received, delivered, rejected, ...
	Detail  string
}

// LocalRecipient is one mailbox a delivered message is filed into.
type LocalRecipient struct {
	UserID  int64
	Mailbox string // usually INBOX
	Prefix  []byte // per-recipient header lines (Return-Path, Delivered-To), CRLF-terminated
	Flags   Flags
}

// Delivery is a message received and ready to be made durable.
type Delivery struct {
	Blob            BlobWriter // finished and synced contents
	From            string     // envelope sender, "" for <>
	HeaderMessageID string     // Message-ID header, for trace lookups
	Received        time.Time
	Recipients      []LocalRecipient
	Remote          []RemoteRecipient // queued for outbound delivery in the same commit
	Ret             string            // DSN RET (FULL or HDRS), for remote recipients
	EnvID           string            // DSN ENVID, for remote recipients
	Events          []Event           // written in the same commit; QueueID is filled in
}

// BlobWriter receives a message's contents before Deliver. Write it, then
// hand it to Deliver (which syncs it) or call Abort.
type BlobWriter interface {
	io.Writer
	QueueID() string
	Size() int64
	Abort() error
}

// Store is what the protocol servers and the command line need.
type Store interface {
	AddDomain(ctx context.Context, name string) error
	RemoveDomain(ctx context.Context, name string) error
	Domains(ctx context.Context) ([]Domain, error)
	HasDomain(ctx context.Context, name string) (bool, error)

	AddUser(ctx context.Context, address, passwordHash string) (User, error)
	RemoveUser(ctx context.Context, address string) error
	SetPassword(ctx context.Context, address, passwordHash string) error
	UserByAddress(ctx context.Context, address string) (User, error)
	Users(ctx context.Context) ([]User, error)

	AddAlias(ctx context.Context, address string, targets []string) error
	RemoveAlias(ctx context.Context, address string) error
	Aliases(ctx context.Context) ([]Alias, error)
	// ResolveLocal maps a local address (user or alias, after the domain
	// is known local) to the users it delivers to; ErrNotFound if none.
	ResolveLocal(ctx context.Context, address string) ([]User, error)

	Mailboxes(ctx context.Context, userID int64) ([]Mailbox, error)
	MailboxByName(ctx context.Context, userID int64, name string) (Mailbox, error)
	Entries(ctx context.Context, mailboxID int64) ([]Entry, error)
	// OpenEntry returns the message as read from that mailbox (prefix
	// included); the caller closes it.
	OpenEntry(ctx context.Context, mailboxID int64, uid uint32) (io.ReadCloser, error)
	// SetFlags replaces the flags of the given UIDs and bumps their MODSEQ.
	SetFlags(ctx context.Context, mailboxID int64, uids []uint32, flags Flags) (modseq uint64, err error)
	// Expunge removes the given UIDs and bumps the mailbox MODSEQ.
	Expunge(ctx context.Context, mailboxID int64, uids []uint32) (modseq uint64, err error)

	// CreateMailbox creates a mailbox (levels separated by HierarchyDelim)
	// with an optional special use; ErrExists if it exists.
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (Mailbox, error)
	// DeleteMailbox removes a mailbox and its messages (not its children
	// nor its subscription); INBOX cannot be deleted.
	DeleteMailbox(ctx context.Context, userID int64, name string) error
	// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
	// its messages into a new mailbox and leaves INBOX empty (RFC 9051 6.3.6).
	RenameMailbox(ctx context.Context, userID int64, oldName, newName string) error
	// SetSubscribed adds or removes a name from the user's subscriptions;
	// the mailbox need not exist.
	SetSubscribed(ctx context.Context, userID int64, name string, subscribed bool) error
	// Subscriptions lists subscribed names, including those of deleted mailboxes.
	Subscriptions(ctx context.Context, userID int64) ([]string, error)
	// MailboxKeywords lists every keyword ever set in the mailbox.
	MailboxKeywords(ctx context.Context, mailboxID int64) ([]string, error)

	// UIDs lists a mailbox's UIDs in ascending order.
	UIDs(ctx context.Context, mailboxID int64) ([]uint32, error)
	// FirstUnseen returns the lowest UID without \Seen, 0 if none.
	FirstUnseen(ctx context.Context, mailboxID int64) (uint32, error)
	// EntriesByUID returns the entries (with keywords) among uids, by UID;
	// for speed it leaves QueueID and From empty (Entries fills them).
	EntriesByUID(ctx context.Context, mailboxID int64, uids []uint32) ([]Entry, error)
	// UpdateFlags changes flags and keywords of the given UIDs; every
	// changed message and the mailbox get a new MODSEQ. It returns the
	// messages that changed.
	UpdateFlags(ctx context.Context, mailboxID int64, uids []uint32, u FlagUpdate) ([]FlagResult, error)
	// AppendMessage stores a message into a mailbox durably (like Deliver)
	// and returns its UID and the mailbox's UIDVALIDITY.
	AppendMessage(ctx context.Context, mailboxID int64, a *Append) (uid, uidValidity uint32, err error)
	// CopyMessages files the given messages into another mailbox with new
	// UIDs; the contents are shared, not copied.
	CopyMessages(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (CopyResult, error)
	// MoveMessages is CopyMessages and Expunge of the sources in one commit.
	MoveMessages(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (CopyResult, error)
	// Changes is where committed changes to mailboxes are published.
	Changes() *Broadcaster

	// NewBlob starts a message's contents.
	NewBlob() (BlobWriter, error)
	// Deliver makes the message and its mailbox entries durable in one
	// commit; when it returns nil the message is safe.
	Deliver(ctx context.Context, d *Delivery) error

	AddEvent(ctx context.Context, e Event) error
	// Events returns the journey of a message by queue ID or Message-ID header.
	Events(ctx context.Context, id string) ([]Event, error)

	Close() error
}
