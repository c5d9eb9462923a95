package sqlite

import (
	"context"
	"slices"
	"testing"

	"github.com/postern-mail/postern/internal/store"
)

// TestEntryCacheSeesOtherProcesses changes a mailbox through a second
// Store on the same data directory (as the command line does next to the
// server) and checks that the first one's cached reads reflect each change
// as a fresh read of the index would.
func TestEntryCacheSeesOtherProcesses(t *testing.T) {
	defer func(n int) { cacheMinRead = n }(cacheMinRead)
	cacheMinRead = 1 // every read goes through the cache
	s, dir := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice@example.test")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	for i := 0; i < 10; i++ {
		appendMsg(t, s, inbox.ID, "Subject: x\r\n\r\nx\r\n", 0)
	}
	other, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	check := func(step string) {
		t.Helper()
		uids, err := s.UIDs(ctx, inbox.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.EntriesByUID(ctx, inbox.ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.entriesPacked(ctx, inbox.ID, 0, 1<<32-1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(uids) != len(want) {
			t.Fatalf("%s: cached %d entries (%d UIDs), index %d", step, len(got), len(uids), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.UID != w.UID || uids[i] != w.UID || g.Flags != w.Flags || g.ModSeq != w.ModSeq || !slices.Equal(g.Keywords, w.Keywords) ||
				!g.InternalDate.Equal(w.InternalDate) || g.Size != w.Size || g.MessageID != w.MessageID {
				t.Fatalf("%s: cached %+v, index %+v", step, g, w)
			}
		}
		first, err := s.FirstUnseen(ctx, inbox.ID)
		if err != nil {
			t.Fatal(err)
		}
		var wantFirst uint32
		for _, e := range want {
			if e.Flags&store.FlagSeen == 0 {
				wantFirst = e.UID
				break
			}
		}
		if first != wantFirst {
			t.Fatalf("%s: FirstUnseen %d, want %d", step, first, wantFirst)
		}
	}
	check("start")
	if !s.cache.has(inbox.ID) {
		t.Fatal("INBOX not in the cache after a read")
	}
	if _, err := other.UpdateFlags(ctx, inbox.ID, []uint32{1, 2, 3}, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagSeen, Keywords: []string{"$Work", "Alpha"}}); err != nil {
		t.Fatal(err)
	}
	check("flags and keywords added")
	if _, err := other.UpdateFlags(ctx, inbox.ID, []uint32{2}, store.FlagUpdate{Op: store.FlagsRemove, Keywords: []string{"alpha"}}); err != nil {
		t.Fatal(err)
	}
	check("keyword removed")
	if _, err := other.Expunge(ctx, inbox.ID, []uint32{1, 5, 10}); err != nil {
		t.Fatal(err)
	}
	check("expunged")
	appendMsg(t, other, inbox.ID, "Subject: y\r\n\r\ny\r\n", store.FlagSeen, "Beta")
	check("appended")
	archive, err := other.CreateMailbox(ctx, u.ID, "Kept", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.MoveMessages(ctx, inbox.ID, []uint32{2, 3}, archive.ID); err != nil {
		t.Fatal(err)
	}
	check("moved away")
	if err := other.RenameMailbox(ctx, u.ID, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	check("INBOX renamed (emptied)")
	old := mustMailbox(t, s, u.ID, "Old")
	if uids, err := s.UIDs(ctx, old.ID); err != nil || len(uids) != 6 {
		t.Fatalf("renamed INBOX: UIDs %v %v, want 6", uids, err)
	}
	if err := other.DeleteMailbox(ctx, u.ID, "Old"); err != nil {
		t.Fatal(err)
	}
	if uids, err := s.UIDs(ctx, old.ID); err != nil || len(uids) != 0 {
		t.Fatalf("deleted mailbox: UIDs %v %v", uids, err)
	}
}

// TestEntryCacheLimits checks that a few UIDs of a mailbox not in the cache
// and mailboxes too large for it are read from the index, and give the
// same entries.
func TestEntryCacheLimits(t *testing.T) {
	defer func(n int) { maxCachedEntries = n }(maxCachedEntries)
	s, _ := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice@example.test")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	for i := 0; i < 10; i++ {
		appendMsg(t, s, inbox.ID, "Subject: x\r\n\r\nx\r\n", 0, "kw")
	}
	es, err := s.EntriesByUID(ctx, inbox.ID, []uint32{3, 4, 4, 9})
	if err != nil || len(es) != 3 || es[0].UID != 3 || es[2].UID != 9 || len(es[1].Keywords) != 1 {
		t.Fatalf("few UIDs: %+v %v", es, err)
	}
	if s.cache.has(inbox.ID) {
		t.Fatal("a read of a few UIDs brought the mailbox into the cache")
	}
	defer func(n int) { cacheMinRead = n }(cacheMinRead)
	cacheMinRead = 1
	maxCachedEntries = 8 // INBOX holds more than half of it
	all := make([]uint32, 10)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	es, err = s.EntriesByUID(ctx, inbox.ID, append(all, all...))
	if err != nil || len(es) != 10 || s.cache.has(inbox.ID) {
		t.Fatalf("too large: %d entries, %v, cached %v", len(es), err, s.cache.has(inbox.ID))
	}
}
