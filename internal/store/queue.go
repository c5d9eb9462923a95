package store

import (
	"context"
	"time"
)

// RemoteRecipient is one recipient of a message that the outbound queue
// delivers to another server.
type RemoteRecipient struct {
	Address string
	// DSN parameters (RFC 3461) given with RCPT.
	Notify string // "", "NEVER" or a list of SUCCESS,FAILURE,DELAY
	ORcpt  string // original recipient, "rfc822;addr" form
}

// QueueEntry is one remote recipient of one stored message, waiting for delivery.
type QueueEntry struct {
	ID          int64
	QueueID     string // the message's queue ID
	MessageID   int64
	From        string // envelope sender ("" for bounces)
	Recipient   string
	Domain      string // recipient domain, lower case
	Notify      string
	ORcpt       string
	Ret         string // FULL or HDRS (RFC 3461 RET), "" when not given
	EnvID       string
	Held        bool
	Attempts    int
	NextAttempt time.Time
	Created     time.Time
	LastError   string
	DelayWarned bool
	Size        int64
	// Signature holds the message's DKIM-Signature fields when an earlier
	// attempt computed them (SignatureDone), so that retries send the same
	// signed message without signing again; "" with SignatureDone means
	// the message is not signed here.
	Signature     string
	SignatureDone bool
}

// QueueStore is what the outbound queue needs from storage.
type QueueStore interface {
	// DueEntries returns up to limit entries not held whose next attempt is
	// at or before now, oldest first.
	DueEntries(ctx context.Context, now time.Time, limit int) ([]QueueEntry, error)
	// NextDue returns the earliest next attempt of an entry not held (zero if none).
	NextDue(ctx context.Context) (time.Time, error)
	// QueueStats returns the number of entries and the creation time of the
	// oldest (zero when empty), for metrics.
	QueueStats(ctx context.Context) (int, time.Time, error)
	// QueueEntries lists every entry, for the command line.
	QueueEntries(ctx context.Context) ([]QueueEntry, error)
	QueueEntry(ctx context.Context, id int64) (QueueEntry, error)
	// OpenMessage reads a stored message by its internal ID.
	OpenMessage(ctx context.Context, messageID int64) (ReadSeekCloser, error)
	// FinishEntries removes delivered, bounced or deleted entries and records
	// one event per entry, in one commit.
	FinishEntries(ctx context.Context, ids []int64, events []Event) error
	// RescheduleEntries records a failed attempt.
	RescheduleEntries(ctx context.Context, ids []int64, next time.Time, lastError string, delayWarned bool, events []Event) error
	// SaveSignature keeps the DKIM-Signature fields computed for a message
	// for its later attempts (see QueueEntry.Signature). They go when the
	// message does.
	SaveSignature(ctx context.Context, messageID int64, fields string) error
	// RetryEntries makes entries due now (all when ids is empty).
	RetryEntries(ctx context.Context, ids []int64) (int, error)
	// HoldEntries holds or releases entries.
	HoldEntries(ctx context.Context, ids []int64, hold bool) (int, error)
	// OnEnqueue registers a function called after each commit that queued entries.
	OnEnqueue(func())
}

// ReadSeekCloser is a stored message opened for reading (possibly several times).
type ReadSeekCloser interface {
	Read(p []byte) (int, error)
	Seek(offset int64, whence int) (int64, error)
	Close() error
}
