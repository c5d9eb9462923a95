package queue

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

// staleStore makes DueEntries slow at the worst moment: once an attempt is
// in flight, it reads the due entries (the attempt's among them), lets the
// attempt end and waits until its outcome is committed before handing back
// the rows, which by then are stale.
type staleStore struct {
	store.QueueStore
	mu      sync.Mutex
	hold    chan struct{} // set while the first attempt waits; closed to let it end
	stalled bool
}

func (s *staleStore) DueEntries(ctx context.Context, now time.Time, limit int) ([]store.QueueEntry, error) {
	es, err := s.QueueStore.DueEntries(ctx, now, limit)
	s.mu.Lock()
	stall := !s.stalled && s.hold != nil && len(es) > 0
	if stall {
		s.stalled = true
		close(s.hold)
	}
	s.mu.Unlock()
	if stall {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if all, _ := s.QueueStore.QueueEntries(ctx); len(all) == 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // and for the attempt to let go of its entries
	}
	return es, err
}

// holdingTransport accepts every recipient; its first attempt waits until
// the store has read the due entries.
type holdingTransport struct {
	st      *staleStore
	started chan struct{}
	mu      sync.Mutex
	calls   int
}

func (h *holdingTransport) Deliver(ctx context.Context, domain string, env Envelope, open func() (io.ReadCloser, error)) Attempt {
	h.mu.Lock()
	h.calls++
	first := h.calls == 1
	h.mu.Unlock()
	if first {
		wait := make(chan struct{})
		h.st.mu.Lock()
		h.st.hold = wait
		h.st.mu.Unlock()
		close(h.started)
		select {
		case <-wait:
		case <-time.After(5 * time.Second):
		}
	}
	att := Attempt{Host: "mx." + domain, IP: "127.0.0.1"}
	for _, r := range env.Recipients {
		att.Results = append(att.Results, Result{Recipient: r, Code: 250, Enhanced: "2.0.0", Text: "ok"})
	}
	return att
}

// TestStaleDueEntriesNotDeliveredAgain: due entries read while an attempt
// was in flight, and handed to the runner after that attempt committed its
// 250 and let go of the entry, must not start a second delivery.
func TestStaleDueEntriesNotDeliveredAgain(t *testing.T) {
	e := setup(t, Config{}, func(int, string, string) (int, string) { return 250, "2.0.0" })
	e.stop() // replaced by a queue on the slow store
	ss := &staleStore{QueueStore: e.st}
	tr := &holdingTransport{st: ss, started: make(chan struct{})}
	q := New(Config{Hostname: "mx.local.test", Retry: []time.Duration{time.Second}, MaxLifetime: time.Hour, DelayWarning: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ss, e.st, tr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	qid := e.send("alice@local.test", "bob@remote.test")
	select {
	case <-tr.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery attempt")
	}
	// The runner waits for wake-ups while its only due entry is in flight;
	// make it read the due entries now, in the middle of the attempt.
	q.Wake()
	e.waitEmpty()
	time.Sleep(300 * time.Millisecond) // room for a second attempt
	tr.mu.Lock()
	n := tr.calls
	tr.mu.Unlock()
	if n != 1 {
		t.Errorf("%d deliveries of one entry, want 1", n)
	}
	evs, err := e.st.Events(context.Background(), qid)
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, ev := range evs {
		if ev.Kind == "delivered" {
			delivered++
		}
	}
	if delivered != 1 {
		t.Errorf("%d delivered events, want 1: %+v", delivered, evs)
	}
}
