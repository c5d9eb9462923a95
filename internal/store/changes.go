package store

import "sync"

// ChangeKind says what happened to a mailbox.
type ChangeKind int

// Kinds of change a backend publishes after each commit.
const (
	ChangeNew     ChangeKind = iota + 1 // a message was added (delivery, APPEND, COPY, MOVE)
	ChangeFlags                         // flags or keywords of a message changed
	ChangeExpunge                       // a message was removed (EXPUNGE, MOVE away)
	ChangeRemoved                       // the mailbox was deleted (or INBOX renamed away its messages)
)

// Change is one committed change to one message of a mailbox. IMAP sessions
// apply them to their own view of the mailbox (sequence numbers, flags).
type Change struct {
	Kind      ChangeKind
	MailboxID int64
	UID       uint32
	ModSeq    uint64
	Flags     Flags    // ChangeNew and ChangeFlags: the message's flags now
	Keywords  []string // ChangeNew and ChangeFlags: its keywords now
	// Origin is the opaque token the writer passed (an IMAP session), so
	// that a session can skip echoes of its own flag changes.
	Origin any
}

// Broadcaster hands committed changes to every subscriber of a mailbox
// without ever blocking the publisher: each subscription keeps its own
// queue and a one-slot signal channel (the in-process equivalent of
// LISTEN/NOTIFY; no polling of the database).
type Broadcaster struct {
	mu   sync.Mutex
	subs map[int64]map[*Subscription]struct{}
}

// NewBroadcaster returns an empty broadcaster.
func NewBroadcaster() *Broadcaster {
	return &Broadcaster{subs: map[int64]map[*Subscription]struct{}{}}
}

// Subscription receives the changes of one mailbox.
type Subscription struct {
	b         *Broadcaster
	mailboxID int64
	c         chan struct{}

	mu      sync.Mutex
	pending []Change
}

// Subscribe starts receiving changes of mailboxID. Close it when done.
func (b *Broadcaster) Subscribe(mailboxID int64) *Subscription {
	s := &Subscription{b: b, mailboxID: mailboxID, c: make(chan struct{}, 1)}
	b.mu.Lock()
	m := b.subs[mailboxID]
	if m == nil {
		m = map[*Subscription]struct{}{}
		b.subs[mailboxID] = m
	}
	m[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish delivers changes to the subscribers of their mailboxes, in order.
func (b *Broadcaster) Publish(changes ...Change) {
	if len(changes) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range changes {
		for s := range b.subs[c.MailboxID] {
			s.mu.Lock()
			s.pending = append(s.pending, c)
			s.mu.Unlock()
			select {
			case s.c <- struct{}{}:
			default:
			}
		}
	}
}

// C is signalled (at least once) after changes arrive.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Take returns and forgets the changes received so far.
func (s *Subscription) Take() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	s.pending = nil
	return p
}

// Close stops the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if m := s.b.subs[s.mailboxID]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(s.b.subs, s.mailboxID)
		}
	}
}
