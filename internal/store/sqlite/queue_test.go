package sqlite

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

// TestTraceAfterRemoteDelivery: a message that only had remote recipients
// is deleted once delivered, but its journey stays findable by Message-ID.
func TestTraceAfterRemoteDelivery(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	bw, _ := s.NewBlob()
	io.WriteString(bw, "Message-ID: <gone@example.org>\r\nSubject: out\r\n\r\nbye\r\n")
	d := &store.Delivery{Blob: bw, From: "a@example.org", HeaderMessageID: "<gone@example.org>",
		Remote: []store.RemoteRecipient{{Address: "b@remote.example"}},
		Events: []store.Event{{Kind: "received", Detail: "from=<a@example.org> msgid=<gone@example.org>"}}}
	if err := s.Deliver(ctx, d); err != nil {
		t.Fatal(err)
	}
	es, err := s.QueueEntries(ctx)
	if err != nil || len(es) != 1 {
		t.Fatalf("queue: %v %v", es, err)
	}
	if err := s.FinishEntries(ctx, []int64{es[0].ID}, []store.Event{{QueueID: es[0].QueueID, Kind: "delivered", Detail: "to=<b@remote.example>"}}); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "messages"); n != 0 {
		t.Fatalf("%d messages left after the last queue entry went", n)
	}
	evs, err := s.Events(ctx, "<gone@example.org>")
	if err != nil || len(evs) != 2 || evs[0].Kind != "received" || evs[1].Kind != "delivered" {
		t.Fatalf("trace by Message-ID after delivery: %+v %v", evs, err)
	}
	if _, err := s.Events(ctx, "<never@example.org>"); err == nil {
		t.Fatal("an unknown Message-ID was found")
	}
}

func TestQueueStats(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	if n, oldest, err := s.QueueStats(ctx); err != nil || n != 0 || !oldest.IsZero() {
		t.Fatalf("empty queue stats: %d %v %v", n, oldest, err)
	}
	bw, _ := s.NewBlob()
	io.WriteString(bw, "Subject: q\r\n\r\nx\r\n")
	if err := s.Deliver(ctx, &store.Delivery{Blob: bw, From: "a@example.org",
		Remote: []store.RemoteRecipient{{Address: "b@remote.example"}, {Address: "c@remote.example"}}}); err != nil {
		t.Fatal(err)
	}
	es, _ := s.QueueEntries(ctx)
	n, oldest, err := s.QueueStats(ctx)
	if err != nil || n != 2 || !oldest.Equal(es[0].Created) {
		t.Fatalf("stats %d %v %v, want 2 entries, oldest %v", n, oldest, err, es[0].Created)
	}
}

// A message's DKIM signature is kept for its retries, shared by all its
// entries, and goes with the message.
func TestQueueSignatureKeptUntilDelivered(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	bw, _ := s.NewBlob()
	io.WriteString(bw, "Subject: out\r\n\r\nbye\r\n")
	d := &store.Delivery{Blob: bw, From: "a@example.org",
		Remote: []store.RemoteRecipient{{Address: "b@one.example"}, {Address: "c@two.example"}}}
	if err := s.Deliver(ctx, d); err != nil {
		t.Fatal(err)
	}
	es, err := s.QueueEntries(ctx)
	if err != nil || len(es) != 2 || es[0].SignatureDone || es[1].SignatureDone {
		t.Fatalf("queue before signing: %+v %v", es, err)
	}
	sig := "DKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=x; b=abc\r\n"
	if err := s.SaveSignature(ctx, es[0].MessageID, sig); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSignature(ctx, es[0].MessageID, sig); err != nil { // a second domain's attempt
		t.Fatal(err)
	}
	es, err = s.DueEntries(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("due: %+v %v", es, err)
	}
	for _, e := range es {
		if !e.SignatureDone || e.Signature != sig {
			t.Errorf("entry %s: signature %v %q", e.Recipient, e.SignatureDone, e.Signature)
		}
	}
	if err := s.FinishEntries(ctx, []int64{es[0].ID, es[1].ID}, nil); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "queue_signatures"); n != 0 {
		t.Errorf("%d signatures left after the message went", n)
	}
	// A message not signed here is recorded as such ("").
	bw, _ = s.NewBlob()
	io.WriteString(bw, "Subject: fwd\r\n\r\nx\r\n")
	if err := s.Deliver(ctx, &store.Delivery{Blob: bw, From: "x@elsewhere.example", Remote: []store.RemoteRecipient{{Address: "b@one.example"}}}); err != nil {
		t.Fatal(err)
	}
	es, _ = s.QueueEntries(ctx)
	if err := s.SaveSignature(ctx, es[0].MessageID, ""); err != nil {
		t.Fatal(err)
	}
	if e, err := s.QueueEntry(ctx, es[0].ID); err != nil || !e.SignatureDone || e.Signature != "" {
		t.Errorf("unsigned: %+v %v", e, err)
	}
}
