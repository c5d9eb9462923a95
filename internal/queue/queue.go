// Package queue is Postern's durable outbound queue. Each remote recipient
// of an accepted message is a row in the store, written in the same commit
// as the 250 (see store.Delivery.Remote). The queue runner wakes when
// something is queued, groups due entries by message and destination
// domain, hands each group to a Transport (one SMTP transaction per domain),
// removes an entry as soon as the remote accepted it, retries temporary
// failures with backoff and jitter, and returns permanent failures, expiry
// and long delays to the sender as RFC 3464 delivery status notifications.
package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

// Envelope is one SMTP transaction for the recipients of one domain.
type Envelope struct {
	From       string
	Recipients []string
	Size       int64
	// DSN parameters (RFC 3461) to pass on when the remote offers DSN.
	Ret, EnvID string
	Notify     []string // per recipient, parallel to Recipients
	ORcpt      []string // per recipient, parallel to Recipients

	// QueueID names the message (unique for all time), for a transport
	// that shares work among the message's domains.
	QueueID string
	// Signature holds the DKIM-Signature fields an earlier attempt
	// computed, when SignatureDone ("" then: not signed here); a transport
	// puts them in front of the message instead of signing again.
	Signature     string
	SignatureDone bool
}

// Result is the remote's answer for one recipient (Code 2xx: delivered).
type Result struct {
	Recipient string
	Code      int
	Enhanced  string // "5.1.1", may be empty
	Text      string
}

// Attempt is what one delivery attempt to a domain produced.
type Attempt struct {
	Host, IP, TLS string
	Results       []Result // one per recipient
	// RemoteDSN: the remote offered DSN and was handed the parameters, so
	// it, not we, reports success (RFC 3461 6.2: no "relayed" notice).
	RemoteDSN bool
	// Signature holds the DKIM-Signature fields this attempt computed,
	// when Signed: the queue keeps them for the message's later attempts.
	Signature string
	Signed    bool
}

// Transport delivers a message to the recipients of one domain.
type Transport interface {
	Deliver(ctx context.Context, domain string, env Envelope, open func() (io.ReadCloser, error)) Attempt
}

// Local is what the queue needs to hand bounces back to senders.
type Local interface {
	HasDomain(ctx context.Context, domain string) (bool, error)
	ResolveLocal(ctx context.Context, address string) ([]store.User, error)
	NewBlob() (store.BlobWriter, error)
	Deliver(ctx context.Context, d *store.Delivery) error
}

// Config tunes the queue.
type Config struct {
	Hostname     string          // Reporting-MTA of DSNs
	Retry        []time.Duration // delays between attempts; the last repeats
	MaxLifetime  time.Duration   // then a failure DSN
	DelayWarning time.Duration   // then one delay DSN
	Concurrency  int             // deliveries in flight at once
	Now          func() time.Time
	Logger       *slog.Logger
}

// Queue runs deliveries.
type Queue struct {
	cfg   Config
	st    store.QueueStore
	local Local
	tr    Transport
	log   *slog.Logger
	wake  chan struct{}

	mu       sync.Mutex
	inFlight map[int64]bool
}

// New returns a queue; call Run to start delivering.
func New(cfg Config, st store.QueueStore, local Local, tr Transport) *Queue {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 20
	}
	if len(cfg.Retry) == 0 {
		cfg.Retry = []time.Duration{time.Minute}
	}
	q := &Queue{cfg: cfg, st: st, local: local, tr: tr, log: cfg.Logger, wake: make(chan struct{}, 1), inFlight: map[int64]bool{}}
	st.OnEnqueue(q.Wake)
	current.p.Store(q)
	return q
}

// Wake makes the runner look for due entries now.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// rescan bounds how long the runner sleeps, so that changes made by the
// command line in another process (retry, release) are seen.
const rescan = 5 * time.Second

// Run delivers until ctx is cancelled, then waits for attempts in flight.
func (q *Queue) Run(ctx context.Context) {
	sem := make(chan struct{}, q.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if ctx.Err() != nil {
			return
		}
		started, busy, err := q.startDue(ctx, sem, &wg)
		if err != nil {
			q.log.Error("queue: reading due entries", "err", err)
		}
		if started {
			continue
		}
		wait := rescan
		// When due entries are all in flight, their attempts wake us as
		// they finish; the earliest next attempt is theirs, so it says
		// nothing about when to look again.
		if next, err := q.st.NextDue(ctx); !busy && err == nil && !next.IsZero() {
			if d := next.Sub(q.cfg.Now()); d < wait {
				wait = max(d, 10*time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-q.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

type group struct {
	domain  string
	entries []store.QueueEntry
}

// startDue starts an attempt for each group of due entries not in flight;
// it reports whether it started any.
func (q *Queue) startDue(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) (started, busy bool, err error) {
	// Read the due entries under q.mu. An attempt releases its entries
	// (under q.mu) only after committing their outcome, so an entry read
	// here and not in flight has not been finished since the read. Read
	// outside the lock, the rows could predate the commit of an attempt
	// that ended meanwhile, and an entry the remote had just accepted
	// would be delivered again.
	q.mu.Lock()
	due, err := q.st.DueEntries(ctx, q.cfg.Now(), 1000)
	if err != nil {
		q.mu.Unlock()
		return false, false, err
	}
	var groups []*group
	index := map[string]*group{}
	for _, e := range due {
		if q.inFlight[e.ID] {
			busy = true
			continue
		}
		q.inFlight[e.ID] = true
		key := fmt.Sprintf("%d %s", e.MessageID, e.Domain)
		g := index[key]
		if g == nil {
			g = &group{domain: e.Domain}
			index[key] = g
			groups = append(groups, g)
		}
		g.entries = append(g.entries, e)
	}
	q.mu.Unlock()
	for _, g := range groups {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			q.release(g.entries)
			return false, busy, nil
		}
		wg.Add(1)
		go func(g *group) {
			defer wg.Done()
			defer func() { <-sem }()
			defer q.Wake()
			defer q.release(g.entries)
			q.attempt(ctx, g)
		}(g)
	}
	return len(groups) > 0, busy, nil
}

func (q *Queue) release(es []store.QueueEntry) {
	q.mu.Lock()
	for _, e := range es {
		delete(q.inFlight, e.ID)
	}
	q.mu.Unlock()
}

// nextDelay is the wait after the given number of failed attempts, with
// ±10% jitter so that entries queued together spread out.
func (q *Queue) nextDelay(attempts int) time.Duration {
	i := attempts
	if i >= len(q.cfg.Retry) {
		i = len(q.cfg.Retry) - 1
	}
	d := q.cfg.Retry[i]
	j := time.Duration(rand.Int63n(int64(d)/5+1)) - d/10
	return d + j
}

// attempt delivers one group and records the outcome of every entry.
func (q *Queue) attempt(ctx context.Context, g *group) {
	first := g.entries[0]
	env := Envelope{From: first.From, Size: first.Size, Ret: first.Ret, EnvID: first.EnvID,
		QueueID: first.QueueID, Signature: first.Signature, SignatureDone: first.SignatureDone}
	byRcpt := map[string]store.QueueEntry{}
	for _, e := range g.entries {
		env.Recipients = append(env.Recipients, e.Recipient)
		env.Notify = append(env.Notify, e.Notify)
		env.ORcpt = append(env.ORcpt, e.ORcpt)
		byRcpt[strings.ToLower(e.Recipient)] = e
	}
	open := func() (io.ReadCloser, error) { return q.st.OpenMessage(ctx, first.MessageID) }
	att := q.tr.Deliver(ctx, g.domain, env, open)
	now := q.cfg.Now()
	where := fmt.Sprintf("host=%s ip=%s tls=%q", orNone(att.Host), orNone(att.IP), orNone(att.TLS))

	var doneIDs []int64
	var events []store.Event
	var failed, delayed, succeeded []dsnRecipient
	type resched struct {
		id     int64
		next   time.Time
		err    string
		warned bool
		event  store.Event
	}
	var later []resched
	// One delay per attempt count for the whole group: its recipients stay
	// due together and are retried in one transaction (and reported in one
	// delay notice); jitter spreads out groups, not a group's recipients.
	delays := map[int]time.Duration{}
	nextFor := func(attempts int) time.Time {
		d, ok := delays[attempts]
		if !ok {
			d = q.nextDelay(attempts)
			delays[attempts] = d
		}
		return now.Add(d)
	}
	seen := map[int64]bool{}
	for _, r := range att.Results {
		e, ok := byRcpt[strings.ToLower(r.Recipient)]
		if !ok || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		reply := strings.TrimSpace(fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text))
		dr := dsnRecipient{entry: e, result: r, remote: att.Host, when: now}
		switch {
		case r.Code >= 200 && r.Code < 300:
			doneIDs = append(doneIDs, e.ID)
			events = append(events, store.Event{QueueID: e.QueueID, Time: now, Kind: "delivered", Detail: fmt.Sprintf("to=<%s> %s reply=%q", e.Recipient, where, reply)})
			if notifies(e.Notify, "SUCCESS") && !att.RemoteDSN {
				succeeded = append(succeeded, dr)
			}
			deliveriesTotal.WithLabelValues("delivered").Inc()
		case r.Code >= 500:
			doneIDs = append(doneIDs, e.ID)
			events = append(events, store.Event{QueueID: e.QueueID, Time: now, Kind: "bounced", Detail: fmt.Sprintf("to=<%s> %s reply=%q", e.Recipient, where, reply)})
			failed = append(failed, dr)
			deliveriesTotal.WithLabelValues("bounced").Inc()
		default:
			if now.Sub(e.Created) >= q.cfg.MaxLifetime {
				doneIDs = append(doneIDs, e.ID)
				dr.expired = true
				events = append(events, store.Event{QueueID: e.QueueID, Time: now, Kind: "expired", Detail: fmt.Sprintf("to=<%s> %s reply=%q after %d attempts", e.Recipient, where, reply, e.Attempts+1)})
				failed = append(failed, dr)
				deliveriesTotal.WithLabelValues("expired").Inc()
				continue
			}
			warn := !e.DelayWarned && now.Sub(e.Created) >= q.cfg.DelayWarning
			if warn && notifies(e.Notify, "DELAY") {
				delayed = append(delayed, dr)
			}
			next := nextFor(e.Attempts)
			later = append(later, resched{id: e.ID, next: next, err: reply, warned: warn,
				event: store.Event{QueueID: e.QueueID, Time: now, Kind: "deferred", Detail: fmt.Sprintf("to=<%s> %s reply=%q next=%s", e.Recipient, where, reply, next.UTC().Format(time.RFC3339))}})
			deliveriesTotal.WithLabelValues("deferred").Inc()
		}
	}
	// Entries the transport gave no result for are retried.
	for _, e := range g.entries {
		if !seen[e.ID] {
			next := nextFor(e.Attempts)
			later = append(later, resched{id: e.ID, next: next, err: "no result from transport",
				event: store.Event{QueueID: e.QueueID, Time: now, Kind: "deferred", Detail: fmt.Sprintf("to=<%s> %s no result", e.Recipient, where)}})
		}
	}
	if att.Signed && (!env.SignatureDone || att.Signature != env.Signature) && len(later) > 0 {
		// Sign once per message: the retries reuse these fields (signed
		// anew when the kept ones' key was retired).
		if err := q.st.SaveSignature(ctx, first.MessageID, att.Signature); err != nil {
			q.log.Error("queue: keeping the DKIM signature", "qid", first.QueueID, "err", err)
		}
	}
	for _, r := range later {
		q.log.Info("queue deferred", "qid", r.event.QueueID, "detail", r.event.Detail)
		if err := q.st.RescheduleEntries(ctx, []int64{r.id}, r.next, r.err, r.warned, []store.Event{r.event}); err != nil {
			q.log.Error("queue: reschedule", "entry", r.id, "err", err)
		}
	}
	// DSNs are made durable before the entries they report on go away, so
	// a crash in between can at worst repeat a DSN, never lose one.
	if len(failed) > 0 {
		q.sendDSN(ctx, dsnFailure, failed)
	}
	if len(delayed) > 0 {
		q.sendDSN(ctx, dsnDelay, delayed)
	}
	if len(succeeded) > 0 {
		q.sendDSN(ctx, dsnSuccess, succeeded)
	}
	if len(doneIDs) > 0 {
		if err := q.st.FinishEntries(ctx, doneIDs, events); err != nil {
			q.log.Error("queue: finishing entries", "err", err)
		}
	}
	for _, ev := range events {
		q.log.Info("queue "+ev.Kind, "qid", ev.QueueID, "detail", ev.Detail)
	}
}

// notifies reports whether a NOTIFY parameter asks for kind; an empty
// NOTIFY means FAILURE,DELAY (RFC 3461 4.1).
func notifies(notify, kind string) bool {
	if notify == "" {
		return kind == "FAILURE" || kind == "DELAY"
	}
	for _, k := range strings.Split(strings.ToUpper(notify), ",") {
		if strings.TrimSpace(k) == kind {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Delete removes entries by hand (postern queue delete): the sender gets a
// failure DSN for them unless silent.
func (q *Queue) Delete(ctx context.Context, ids []int64, silent bool) (int, error) {
	now := q.cfg.Now()
	byMsg := map[int64][]dsnRecipient{}
	var order []int64
	var found []int64
	var events []store.Event
	for _, id := range ids {
		e, err := q.st.QueueEntry(ctx, id)
		if err != nil {
			return len(found), err
		}
		found = append(found, id)
		events = append(events, store.Event{QueueID: e.QueueID, Time: now, Kind: "deleted", Detail: fmt.Sprintf("to=<%s> by the administrator silent=%v", e.Recipient, silent)})
		if _, ok := byMsg[e.MessageID]; !ok {
			order = append(order, e.MessageID)
		}
		byMsg[e.MessageID] = append(byMsg[e.MessageID], dsnRecipient{entry: e, when: now,
			result: Result{Recipient: e.Recipient, Code: 550, Enhanced: "5.0.0", Text: "Message deleted from the queue by the administrator; last error: " + orNone(e.LastError)}})
	}
	if !silent {
		for _, m := range order {
			q.sendDSN(ctx, dsnFailure, byMsg[m])
		}
	}
	return len(found), q.st.FinishEntries(ctx, found, events)
}
