package sqlite

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/blob"
	"github.com/postern-mail/postern/internal/store"
)

func mustMailbox(t *testing.T, s *Store, userID int64, name string) store.Mailbox {
	t.Helper()
	mb, err := s.MailboxByName(context.Background(), userID, name)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

func appendMsg(t *testing.T, s *Store, mbID int64, body string, flags store.Flags, kws ...string) uint32 {
	t.Helper()
	bw, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(bw, body)
	uid, _, err := s.AppendMessage(context.Background(), mbID, &store.Append{Blob: bw, Flags: flags, Keywords: kws, InternalDate: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func mailboxNames(t *testing.T, s *Store, userID int64) []string {
	t.Helper()
	mbs, err := s.Mailboxes(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mbs {
		names = append(names, m.Name)
	}
	return names
}

func TestCreateDeleteRenameSubscribe(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice@example.test")

	if _, err := s.CreateMailbox(ctx, u.ID, "Work/Reports", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "work/reports", ""); err != nil {
		t.Fatalf("names are case-sensitive except INBOX: %v", err)
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "Work/Reports", ""); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "inbox", ""); !errors.Is(err, store.ErrExists) {
		t.Fatalf("inbox: %v", err)
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a*", "b%", "a\x01"} {
		if _, err := s.CreateMailbox(ctx, u.ID, bad, ""); !errors.Is(err, store.ErrBadName) {
			t.Errorf("CreateMailbox(%q) = %v, want ErrBadName", bad, err)
		}
	}
	if mb, err := s.CreateMailbox(ctx, u.ID, "Spam", `\junk`); err != nil || mb.SpecialUse != store.SpecialJunk {
		t.Fatalf("special use: %+v %v", mb, err)
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "X", `\Bogus`); !errors.Is(err, store.ErrBadName) {
		t.Fatalf("bad special use: %v", err)
	}

	// Default mailboxes are subscribed; created ones are not.
	subs, _ := s.Subscriptions(ctx, u.ID)
	if !slices.Equal(subs, []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"}) {
		t.Fatalf("subscriptions %v", subs)
	}
	if err := s.SetSubscribed(ctx, u.ID, "Work/Reports", true); err != nil {
		t.Fatal(err)
	}
	if mb := mustMailbox(t, s, u.ID, "Work/Reports"); !mb.Subscribed {
		t.Fatal("not subscribed")
	}

	// Rename moves children and subscriptions.
	mb := mustMailbox(t, s, u.ID, "Work/Reports")
	appendMsg(t, s, mb.ID, "Subject: r\r\n\r\nreport\r\n", 0)
	if err := s.RenameMailbox(ctx, u.ID, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	renamed := mustMailbox(t, s, u.ID, "Job/Reports")
	if renamed.ID != mb.ID || renamed.UIDValidity != mb.UIDValidity || !renamed.Subscribed || renamed.Messages != 1 {
		t.Fatalf("renamed %+v, was %+v", renamed, mb)
	}
	if err := s.RenameMailbox(ctx, u.ID, "Job", "Job/Sub"); !errors.Is(err, store.ErrBadName) {
		t.Fatalf("rename into itself: %v", err)
	}
	if err := s.RenameMailbox(ctx, u.ID, "Job/Reports", "Sent"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
	if err := s.RenameMailbox(ctx, u.ID, "Nope", "Other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rename missing: %v", err)
	}

	// Delete keeps the subscription (RFC 9051 6.3.9) and frees the message.
	if err := s.DeleteMailbox(ctx, u.ID, "Job/Reports"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MailboxByName(ctx, u.ID, "Job/Reports"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted mailbox still there: %v", err)
	}
	subs, _ = s.Subscriptions(ctx, u.ID)
	if !slices.Contains(subs, "Job/Reports") {
		t.Fatalf("subscription lost: %v", subs)
	}
	if n := countRows(t, s, "messages"); n != 0 {
		t.Fatalf("%d messages left after delete", n)
	}
	if err := s.DeleteMailbox(ctx, u.ID, "INBOX"); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("delete INBOX: %v", err)
	}
	if err := s.SetSubscribed(ctx, u.ID, "Job/Reports", false); err != nil {
		t.Fatal(err)
	}
	subs, _ = s.Subscriptions(ctx, u.ID)
	if slices.Contains(subs, "Job/Reports") {
		t.Fatalf("unsubscribe failed: %v", subs)
	}
}

func TestRenameInboxMovesMessages(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice@example.test")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	deliver(t, s, "Subject: one\r\n\r\n1\r\n", u)
	deliver(t, s, "Subject: two\r\n\r\n2\r\n", u)
	if _, err := s.CreateMailbox(ctx, u.ID, "INBOX/Child", ""); err != nil {
		t.Fatal(err)
	}
	inbox = mustMailbox(t, s, u.ID, "INBOX")
	sub := s.Changes().Subscribe(inbox.ID)
	defer sub.Close()
	if err := s.RenameMailbox(ctx, u.ID, "inbox", "Old"); err != nil {
		t.Fatal(err)
	}
	old := mustMailbox(t, s, u.ID, "Old")
	inbox2 := mustMailbox(t, s, u.ID, "INBOX")
	if old.Messages != 2 || inbox2.Messages != 0 || inbox2.ID != inbox.ID || old.UIDValidity == inbox.UIDValidity {
		t.Fatalf("old %+v inbox %+v", old, inbox2)
	}
	if inbox2.HighestModSeq <= inbox.HighestModSeq || inbox2.UIDNext != inbox.UIDNext {
		t.Fatalf("INBOX modseq/uidnext: before %+v after %+v", inbox, inbox2)
	}
	if got := readEntry(t, s, old.ID, 2); !strings.Contains(got, "Subject: two") {
		t.Fatalf("moved message: %q", got)
	}
	if _, err := s.MailboxByName(ctx, u.ID, "INBOX/Child"); err != nil {
		t.Fatalf("INBOX's child moved: %v", err)
	}
	if ch := sub.Take(); len(ch) != 2 || ch[0].Kind != store.ChangeExpunge {
		t.Fatalf("changes %+v", ch)
	}
	// New mail still goes to INBOX and never reuses a UID.
	deliver(t, s, "Subject: three\r\n\r\n3\r\n", u)
	if uids, _ := s.UIDs(ctx, inbox.ID); !slices.Equal(uids, []uint32{3}) {
		t.Fatalf("INBOX uids %v", uids)
	}
}

func TestAppendFlagsKeywordsCopyMove(t *testing.T) {
	for _, size := range []int{100, blob.InlineMax + 10} {
		s, _ := openTest(t)
		ctx := context.Background()
		u := mustUser(t, s, "alice@example.test")
		inbox := mustMailbox(t, s, u.ID, "INBOX")
		arch := mustMailbox(t, s, u.ID, "Archive")
		body := "Subject: hi\r\n\r\n" + strings.Repeat("x", size) + "\r\n"

		sub := s.Changes().Subscribe(inbox.ID)
		defer sub.Close()
		uid := appendMsg(t, s, inbox.ID, body, store.FlagSeen, "$Forwarded", "$forwarded", "Work")
		if uid != 1 {
			t.Fatalf("uid %d", uid)
		}
		select {
		case <-sub.C():
		case <-time.After(time.Second):
			t.Fatal("no change published for APPEND")
		}
		ch := sub.Take()
		if len(ch) != 1 || ch[0].Kind != store.ChangeNew || ch[0].UID != 1 || !slices.Equal(ch[0].Keywords, []string{"$Forwarded", "Work"}) {
			t.Fatalf("append change %+v", ch)
		}
		es, err := s.EntriesByUID(ctx, inbox.ID, []uint32{1})
		if err != nil || len(es) != 1 {
			t.Fatalf("entries %v %v", es, err)
		}
		e := es[0]
		if e.Flags != store.FlagSeen || !slices.Equal(e.Keywords, []string{"$Forwarded", "Work"}) || !e.InternalDate.Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) || e.Size != int64(len(body)) {
			t.Fatalf("entry %+v", e)
		}
		if got := readEntry(t, s, inbox.ID, 1); got != body {
			t.Fatalf("appended body differs (%d vs %d bytes)", len(got), len(body))
		}

		// +FLAGS with a keyword already spelled differently, -FLAGS, FLAGS.
		res, err := s.UpdateFlags(ctx, inbox.ID, []uint32{1, 99}, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagFlagged, Keywords: []string{"work", "Later"}, Origin: "me"})
		if err != nil || len(res) != 1 || res[0].Flags != store.FlagSeen|store.FlagFlagged || !slices.Equal(res[0].Keywords, []string{"$Forwarded", "Later", "Work"}) {
			t.Fatalf("add: %+v %v", res, err)
		}
		if ch := sub.Take(); len(ch) != 1 || ch[0].Kind != store.ChangeFlags || ch[0].Origin != "me" {
			t.Fatalf("flag change %+v", ch)
		}
		if res, _ := s.UpdateFlags(ctx, inbox.ID, []uint32{1}, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagSeen}); len(res) != 0 {
			t.Fatalf("no-op reported a change: %+v", res)
		}
		res, _ = s.UpdateFlags(ctx, inbox.ID, []uint32{1}, store.FlagUpdate{Op: store.FlagsRemove, Flags: store.FlagSeen, Keywords: []string{"LATER"}})
		if len(res) != 1 || res[0].Flags != store.FlagFlagged || !slices.Equal(res[0].Keywords, []string{"$Forwarded", "Work"}) {
			t.Fatalf("remove: %+v", res)
		}
		if mb := mustMailbox(t, s, u.ID, "INBOX"); mb.Unseen != 1 {
			t.Fatalf("unseen %d", mb.Unseen)
		}
		kws, _ := s.MailboxKeywords(ctx, inbox.ID)
		if !slices.Equal(kws, []string{"$Forwarded", "Later", "Work"}) {
			t.Fatalf("mailbox keywords %v", kws)
		}
		res, _ = s.UpdateFlags(ctx, inbox.ID, []uint32{1}, store.FlagUpdate{Op: store.FlagsSet, Flags: store.FlagDeleted})
		if len(res) != 1 || res[0].Flags != store.FlagDeleted || len(res[0].Keywords) != 0 {
			t.Fatalf("set: %+v", res)
		}
		sub.Take()

		// COPY shares the stored message; MOVE expunges the source.
		appendMsg(t, s, inbox.ID, "Subject: two\r\n\r\n2\r\n", 0, "Keep")
		sub.Take()
		cr, err := s.CopyMessages(ctx, inbox.ID, []uint32{2, 1, 7}, arch.ID)
		if err != nil || !slices.Equal(cr.SourceUIDs, []uint32{1, 2}) || !slices.Equal(cr.DestUIDs, []uint32{1, 2}) || cr.UIDValidity != arch.UIDValidity {
			t.Fatalf("copy %+v %v", cr, err)
		}
		if n := countRows(t, s, "messages"); n != 2 {
			t.Fatalf("copy duplicated contents: %d messages", n)
		}
		if es, _ := s.EntriesByUID(ctx, arch.ID, []uint32{2}); len(es) != 1 || !slices.Equal(es[0].Keywords, []string{"Keep"}) {
			t.Fatalf("copied keywords %+v", es)
		}
		mr, err := s.MoveMessages(ctx, inbox.ID, []uint32{1, 2}, arch.ID)
		if err != nil || !slices.Equal(mr.DestUIDs, []uint32{3, 4}) {
			t.Fatalf("move %+v %v", mr, err)
		}
		ch = sub.Take()
		if len(ch) != 2 || ch[0].Kind != store.ChangeExpunge || ch[1].UID != 2 {
			t.Fatalf("move changes %+v", ch)
		}
		if uids, _ := s.UIDs(ctx, inbox.ID); len(uids) != 0 {
			t.Fatalf("inbox after move %v", uids)
		}
		if got := readEntry(t, s, arch.ID, 3); got != body {
			t.Fatal("moved body differs")
		}
		// Expunging every entry frees the contents.
		if _, err := s.Expunge(ctx, arch.ID, []uint32{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, s, "messages"); n != 0 {
			t.Fatalf("%d messages left", n)
		}
		mb := mustMailbox(t, s, u.ID, "Archive")
		if mb.Messages != 0 || mb.Unseen != 0 || mb.Size != 0 || mb.UIDNext != 5 {
			t.Fatalf("archive counts %+v", mb)
		}
	}
}

func TestDeliverPublishes(t *testing.T) {
	s, _ := openTest(t)
	u := mustUser(t, s, "alice@example.test")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	sub := s.Changes().Subscribe(inbox.ID)
	defer sub.Close()
	other := s.Changes().Subscribe(inbox.ID + 1000)
	defer other.Close()
	deliver(t, s, "Subject: x\r\n\r\nx\r\n", u)
	select {
	case <-sub.C():
	case <-time.After(time.Second):
		t.Fatal("delivery not published")
	}
	if ch := sub.Take(); len(ch) != 1 || ch[0].Kind != store.ChangeNew || ch[0].UID != 1 {
		t.Fatalf("changes %+v", ch)
	}
	if ch := other.Take(); len(ch) != 0 {
		t.Fatalf("other mailbox got %+v", ch)
	}
	if _, err := s.Expunge(context.Background(), inbox.ID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if ch := sub.Take(); len(ch) != 1 || ch[0].Kind != store.ChangeExpunge {
		t.Fatalf("expunge changes %+v", ch)
	}
}

func TestEntriesByUIDFragmented(t *testing.T) {
	s, _ := openTest(t)
	u := mustUser(t, s, "alice@example.test")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	for i := 0; i < 60; i++ {
		appendMsg(t, s, inbox.ID, "Subject: x\r\n\r\nx\r\n", 0)
	}
	var want []uint32
	for i := uint32(1); i <= 60; i += 3 {
		want = append(want, i)
	}
	es, err := s.EntriesByUID(context.Background(), inbox.ID, append(slices.Clone(want), 1000))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, e := range es {
		got = append(got, e.UID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	// UIDs after expunging all but those.
	var gone []uint32
	for i := uint32(1); i <= 60; i++ {
		if _, ok := slices.BinarySearch(want, i); !ok {
			gone = append(gone, i)
		}
	}
	if _, err := s.Expunge(context.Background(), inbox.ID, gone); err != nil {
		t.Fatal(err)
	}
	if uids, err := s.UIDs(context.Background(), inbox.ID); err != nil || !slices.Equal(uids, want) {
		t.Fatalf("UIDs %v %v, want %v", uids, err, want)
	}
}

func TestMailboxIDsNeverReused(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice@example.test")
	mb, err := s.CreateMailbox(ctx, u.ID, "Tmp", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, u.ID, "Tmp"); err != nil {
		t.Fatal(err)
	}
	mb2, err := s.CreateMailbox(ctx, u.ID, "Tmp", "")
	if err != nil {
		t.Fatal(err)
	}
	if mb2.ID == mb.ID || mb2.UIDValidity <= mb.UIDValidity {
		t.Fatalf("recreated mailbox reuses ID %d or UIDVALIDITY %d", mb2.ID, mb2.UIDValidity)
	}
}
