package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/postern-mail/postern/internal/blob"
	"github.com/postern-mail/postern/internal/store"
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func mustUser(t testing.TB, s *Store, addr string) store.User {
	t.Helper()
	ctx := context.Background()
	domain := addr[strings.LastIndexByte(addr, '@')+1:]
	if ok, _ := s.HasDomain(ctx, domain); !ok {
		if err := s.AddDomain(ctx, domain); err != nil {
			t.Fatal(err)
		}
	}
	u, err := s.AddUser(ctx, addr, "$argon2id$test")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// deliver stores body for the given users and returns the queue ID.
func deliver(t testing.TB, s *Store, body string, users ...store.User) string {
	t.Helper()
	bw, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(bw, body)
	d := &store.Delivery{Blob: bw, From: "sender@example.org", HeaderMessageID: "<id-" + bw.QueueID() + "@x>"}
	for _, u := range users {
		d.Recipients = append(d.Recipients, store.LocalRecipient{UserID: u.ID, Prefix: []byte("Delivered-To: " + u.Address + "\r\n")})
	}
	d.Events = []store.Event{{Kind: "received", Detail: "test"}}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return bw.QueueID()
}

func readEntry(t testing.TB, s *Store, mailboxID int64, uid uint32) string {
	t.Helper()
	r, err := s.OpenEntry(context.Background(), mailboxID, uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAccounts(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	if err := s.AddDomain(ctx, "Example.ORG"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDomain(ctx, "example.org"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate domain: %v", err)
	}
	if ok, _ := s.HasDomain(ctx, "EXAMPLE.org"); !ok {
		t.Fatal("domain lookup is not case-insensitive")
	}
	if _, err := s.AddUser(ctx, "bob@nowhere.test", "h"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user in unknown domain: %v", err)
	}
	u, err := s.AddUser(ctx, "Alice@Example.org", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Address != "alice@example.org" {
		t.Fatalf("address not lower-cased: %s", u.Address)
	}
	if _, err := s.AddUser(ctx, "alice@example.org", "h"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	mbs, err := s.Mailboxes(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	uvs := map[uint32]bool{}
	for _, m := range mbs {
		names = append(names, m.Name+m.SpecialUse)
		if uvs[m.UIDValidity] {
			t.Fatalf("UIDVALIDITY %d reused", m.UIDValidity)
		}
		uvs[m.UIDValidity] = true
		if m.UIDNext != 1 {
			t.Fatalf("new mailbox UIDNEXT %d", m.UIDNext)
		}
	}
	if got := strings.Join(names, ","); got != `INBOX,Archive\Archive,Drafts\Drafts,Junk\Junk,Sent\Sent,Trash\Trash` {
		t.Fatalf("default mailboxes: %s", got)
	}
	if err := s.SetPassword(ctx, "ALICE@example.org", "h2"); err != nil {
		t.Fatal(err)
	}
	if u2, _ := s.UserByAddress(ctx, "alice@EXAMPLE.org"); u2.PasswordHash != "h2" {
		t.Fatalf("password not changed: %q", u2.PasswordHash)
	}
	bob := mustUser(t, s, "bob@example.org")
	if err := s.AddAlias(ctx, "team@example.org", []string{"alice@example.org", "Bob@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias(ctx, "x@example.org", []string{"nobody@example.org"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("alias to a missing user of a hosted domain: %v", err)
	}
	// Forwarding: a target elsewhere is kept for the outbound queue.
	if err := s.AddAlias(ctx, "fwd@example.org", []string{"remote@elsewhere.test", "alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	users, fwd, err := s.ResolveRecipient(ctx, "FWD+tag@example.org")
	if err != nil || len(users) != 1 || users[0].Address != "alice@example.org" || len(fwd) != 1 || fwd[0] != "remote@elsewhere.test" {
		t.Fatalf("ResolveRecipient(fwd) = %v %v %v", users, fwd, err)
	}
	if users, fwd, err := s.ResolveRecipient(ctx, "alice@example.org"); err != nil || len(users) != 1 || len(fwd) != 0 {
		t.Fatalf("ResolveRecipient(alice) = %v %v %v", users, fwd, err)
	}
	if _, _, err := s.ResolveRecipient(ctx, "nobody@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ResolveRecipient(nobody): %v", err)
	}
	if err := s.RemoveAlias(ctx, "fwd@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias(ctx, "alice@example.org", []string{"bob@example.org"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("alias shadowing a user: %v", err)
	}
	for addr, want := range map[string]string{
		"alice@example.org":        "alice@example.org",
		"ALICE+news@example.org":   "alice@example.org",
		"Team@Example.org":         "alice@example.org,bob@example.org",
		"nobody@example.org":       "",
		"team+x@example.org":       "alice@example.org,bob@example.org",
		"alice+a+b@example.org":    "alice@example.org",
		"bob@example.org.invalid@": "",
	} {
		users, err := s.ResolveLocal(ctx, addr)
		var got []string
		for _, u := range users {
			got = append(got, u.Address)
		}
		if strings.Join(got, ",") != want {
			t.Errorf("ResolveLocal(%s) = %v, %v; want %q", addr, got, err, want)
		}
		if want == "" && err == nil {
			t.Errorf("ResolveLocal(%s): no error for an unknown address", addr)
		}
	}
	if err := s.AddAlias(ctx, "@example.org", []string{"bob@example.org"}); err != nil {
		t.Fatal(err)
	}
	if users, err := s.ResolveLocal(ctx, "anything@example.org"); err != nil || len(users) != 1 || users[0].ID != bob.ID {
		t.Fatalf("catch-all: %v %v", users, err)
	}
	if err := s.RemoveDomain(ctx, "example.org"); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("removing a domain in use: %v", err)
	}
	if err := s.RemoveUser(ctx, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	as, _ := s.Aliases(ctx)
	if len(as) != 1 || as[0].Address != "team@example.org" || len(as[0].Targets) != 1 {
		t.Fatalf("aliases after removing bob: %+v", as)
	}
	if err := s.RemoveAlias(ctx, "team@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUser(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.Domains(ctx); len(ds) != 0 {
		t.Fatalf("domains left: %v", ds)
	}
}

func TestDeliverStoresOnceForManyRecipients(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"inline", 1000}, {"file", 300 << 10}} {
		t.Run(tc.name, func(t *testing.T) { testStoreOnce(t, tc.size) })
	}
}

func countRows(t *testing.T, s *Store, table string) int {
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func testStoreOnce(t *testing.T, size int) {
	s, dir := openTest(t)
	ctx := context.Background()
	a, b := mustUser(t, s, "a@example.org"), mustUser(t, s, "b@example.org")
	body := "Subject: hello\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", size/38)
	qid := deliver(t, s, body, a, b)

	files, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", "*"))
	if size > blob.InlineMax {
		if len(files) != 1 || filepath.Base(files[0]) != qid || countRows(t, s, "contents") != 0 {
			t.Fatalf("want one message file %s and no inline contents, got %v", qid, files)
		}
	} else if len(files) != 0 || countRows(t, s, "contents") != 1 {
		t.Fatalf("want the message inline once, got files %v and %d contents rows", files, countRows(t, s, "contents"))
	}
	for _, u := range []store.User{a, b} {
		mb, err := s.MailboxByName(ctx, u.ID, "inbox")
		if err != nil {
			t.Fatal(err)
		}
		if mb.Messages != 1 || mb.Unseen != 1 || mb.UIDNext != 2 || mb.HighestModSeq != 2 {
			t.Fatalf("mailbox counters after delivery: %+v", mb)
		}
		es, err := s.Entries(ctx, mb.ID)
		if err != nil || len(es) != 1 {
			t.Fatalf("entries: %v %v", es, err)
		}
		want := "Delivered-To: " + u.Address + "\r\n" + body
		if got := readEntry(t, s, mb.ID, es[0].UID); got != want {
			t.Fatalf("entry contents differ (len %d, want %d)", len(got), len(want))
		}
		if es[0].Size != int64(len(want)) || mb.Size != int64(len(want)) {
			t.Fatalf("size %d/%d, want %d", es[0].Size, mb.Size, len(want))
		}
	}
	evs, err := s.Events(ctx, qid)
	if err != nil || len(evs) != 1 || evs[0].Kind != "received" {
		t.Fatalf("events: %v %v", evs, err)
	}
	if evs2, err := s.Events(ctx, "<id-"+qid+"@x>"); err != nil || len(evs2) != 1 {
		t.Fatalf("events by Message-ID: %v %v", evs2, err)
	}

	// Expunging from one mailbox keeps the message; from both, removes it.
	mbA, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	mbB, _ := s.MailboxByName(ctx, b.ID, "INBOX")
	if _, err := s.Expunge(ctx, mbA.ID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if got := readEntry(t, s, mbB.ID, 1); !strings.HasSuffix(got, body) {
		t.Fatalf("b's copy damaged after a's expunge")
	}
	if _, err := s.Expunge(ctx, mbB.ID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "blobs", "*", "*"))
	if len(files) != 0 || countRows(t, s, "contents") != 0 || countRows(t, s, "messages") != 0 {
		t.Fatalf("message not removed after last expunge: files %v", files)
	}
}

func TestUIDsAndModSeq(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	u := mustUser(t, s, "a@example.org")
	for i := 0; i < 3; i++ {
		deliver(t, s, fmt.Sprintf("Subject: %d\r\n\r\n.\r\n", i), u)
	}
	mb, _ := s.MailboxByName(ctx, u.ID, "INBOX")
	if mb.UIDNext != 4 || mb.HighestModSeq != 4 || mb.Messages != 3 || mb.Unseen != 3 {
		t.Fatalf("after 3 deliveries: %+v", mb)
	}
	ms, err := s.SetFlags(ctx, mb.ID, []uint32{1, 2}, store.FlagSeen|store.FlagFlagged)
	if err != nil || ms != 5 {
		t.Fatalf("SetFlags modseq %d, %v", ms, err)
	}
	// Setting the same flags again changes nothing and does not bump MODSEQ.
	if ms2, err := s.SetFlags(ctx, mb.ID, []uint32{1, 2}, store.FlagSeen|store.FlagFlagged); err != nil || ms2 != 4 && ms2 != 5 {
		t.Fatalf("no-op SetFlags modseq %d, %v", ms2, err)
	}
	mb, _ = s.MailboxByName(ctx, u.ID, "INBOX")
	if mb.HighestModSeq != 5 || mb.Unseen != 1 {
		t.Fatalf("after flags: %+v", mb)
	}
	es, _ := s.Entries(ctx, mb.ID)
	if es[0].ModSeq != 5 || es[0].Flags != store.FlagSeen|store.FlagFlagged || es[2].ModSeq != 4 {
		t.Fatalf("entries after flags: %+v", es)
	}
	if ms, err := s.Expunge(ctx, mb.ID, []uint32{3}); err != nil || ms != 6 {
		t.Fatalf("Expunge modseq %d, %v", ms, err)
	}
	deliver(t, s, "Subject: 4\r\n\r\n", u)
	es, _ = s.Entries(ctx, mb.ID)
	if len(es) != 3 || es[2].UID != 4 {
		t.Fatalf("UID reused after expunge: %+v", es)
	}
	mb, _ = s.MailboxByName(ctx, u.ID, "INBOX")
	if mb.UIDNext != 5 || mb.Messages != 3 || mb.Unseen != 1 || mb.HighestModSeq != 7 {
		t.Fatalf("final counters: %+v", mb)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s, "a@example.org")
	deliver(t, s, "Subject: keep\r\n\r\nme\r\n", u)
	mb, _ := s.MailboxByName(context.Background(), u.ID, "INBOX")
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	mb2, _ := s2.MailboxByName(context.Background(), u.ID, "INBOX")
	if mb2.UIDValidity != mb.UIDValidity || mb2.UIDNext != 2 {
		t.Fatalf("mailbox changed across reopen: %+v vs %+v", mb2, mb)
	}
	if got := readEntry(t, s2, mb.ID, 1); !strings.HasSuffix(got, "me\r\n") {
		t.Fatalf("message after reopen: %q", got)
	}
}

func TestRecoverRemovesUnacknowledgedFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s, "a@example.org")
	big := "Subject: ok\r\n\r\n" + strings.Repeat("x", blob.InlineMax) + "\r\n"
	qid := deliver(t, s, big, u)
	// A message written but never committed (the process died before the commit).
	bw, _ := s.NewBlob()
	io.WriteString(bw, big)
	orphan := bw.QueueID()
	// A committed message whose promotion did not happen yet.
	s.Close()
	src := filepath.Join(dir, "blobs", qid[len(qid)-2:], qid)
	if err := os.Rename(src, filepath.Join(dir, "blobs", "incoming", qid)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := os.Stat(filepath.Join(dir, "blobs", "incoming", orphan)); !os.IsNotExist(err) {
		t.Fatalf("unacknowledged file still there: %v", err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("committed file not promoted at open: %v", err)
	}
}

func TestConcurrentDeliveriesShareCommits(t *testing.T) {
	s, _ := openTest(t)
	u := mustUser(t, s, "a@example.org")
	before := Commits.Load()
	const n = 64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			deliver(t, s, fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, bytes.Repeat([]byte("x"), 1000)), u)
		}(i)
	}
	wg.Wait()
	commits := Commits.Load() - before
	mb, _ := s.MailboxByName(context.Background(), u.ID, "INBOX")
	if mb.Messages != n || mb.UIDNext != n+1 {
		t.Fatalf("after %d concurrent deliveries: %+v", n, mb)
	}
	if commits >= n {
		t.Fatalf("%d commits for %d concurrent deliveries: no group commit", commits, n)
	}
	t.Logf("%d deliveries in %d commits", n, commits)
}
