package sqlite

import (
	"context"
	"testing"

	"github.com/postern-mail/postern/internal/store"
)

// syncMode runs a write request that reads the writer connection's
// synchronous setting inside its own commit (1 NORMAL, 2 FULL).
func syncMode(t *testing.T, s *Store, noFsync bool) int {
	t.Helper()
	var mode int
	if err := s.write(&writeReq{noFsync: noFsync, fn: func(w *wtx) error {
		return w.QueryRow("PRAGMA synchronous").Scan(&mode)
	}}); err != nil {
		t.Fatal(err)
	}
	return mode
}

// TestFlagChangesSkipOnlyTheirOwnFsync: a batch of flag changes alone
// commits with synchronous=NORMAL, every other write (a delivery above all)
// with FULL again, and the flag change is kept across a reopen.
func TestFlagChangesSkipOnlyTheirOwnFsync(t *testing.T) {
	s, dir := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice@example.test")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	deliver(t, s, "Subject: one\r\n\r\nbody\r\n", u)
	if m := syncMode(t, s, false); m != 2 {
		t.Fatalf("synchronous=%d for an ordinary write, want 2 (FULL)", m)
	}
	if _, err := s.UpdateFlags(ctx, inbox.ID, []uint32{1}, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagSeen | store.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	if m := syncMode(t, s, true); m != 1 {
		t.Fatalf("synchronous=%d for a flag-only batch, want 1 (NORMAL)", m)
	}
	deliver(t, s, "Subject: two\r\n\r\nbody\r\n", u)
	if m := syncMode(t, s, false); m != 2 {
		t.Fatalf("synchronous=%d after a flag-only batch, want 2 (FULL) again", m)
	}
	if _, err := s.UpdateFlags(ctx, inbox.ID, []uint32{2}, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagAnswered}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	es, err := s2.EntriesByUID(ctx, inbox.ID, []uint32{1, 2})
	if err != nil || len(es) != 2 {
		t.Fatalf("entries %v %v", es, err)
	}
	if es[0].Flags != store.FlagSeen|store.FlagFlagged || es[1].Flags != store.FlagAnswered {
		t.Fatalf("flags after reopen: %v %v", es[0].Flags, es[1].Flags)
	}
}
