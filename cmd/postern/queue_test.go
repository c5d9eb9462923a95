package main

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// enqueue stores a message from alice@example.org for the remote recipients.
func enqueue(t *testing.T, cfg string, rcpts ...string) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(filepath.Dir(cfg), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bw, _ := st.NewBlob()
	io.WriteString(bw, "Subject: queued\r\n\r\nbody\r\n")
	d := &store.Delivery{Blob: bw, From: "alice@example.org"}
	for _, r := range rcpts {
		d.Remote = append(d.Remote, store.RemoteRecipient{Address: r})
	}
	if err := st.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

type queueList struct {
	Entries []struct {
		ID        int64  `json:"id"`
		QueueID   string `json:"queue_id"`
		From      string `json:"from"`
		Recipient string `json:"recipient"`
		Domain    string `json:"domain"`
		Held      bool   `json:"held"`
		Attempts  int    `json:"attempts"`
	} `json:"entries"`
}

func listQueue(t *testing.T, cfg string) queueList {
	t.Helper()
	var l queueList
	if err := json.Unmarshal([]byte(ok(t, cfg, "", "queue", "list", "--json")), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestQueueCommands(t *testing.T) {
	cfg := testConfig(t)
	ok(t, cfg, "", "domain", "add", "example.org")
	ok(t, cfg, "", "user", "add", "alice@example.org")
	if out := ok(t, cfg, "", "queue", "list"); !strings.Contains(out, "queue is empty") {
		t.Errorf("empty queue listed as %q", out)
	}
	if l := listQueue(t, cfg); l.Entries == nil || len(l.Entries) != 0 {
		t.Errorf("empty queue JSON %+v, want an empty list", l)
	}
	enqueue(t, cfg, "bob@remote.example", "carol@other.example")
	l := listQueue(t, cfg)
	if len(l.Entries) != 2 || l.Entries[0].Recipient != "bob@remote.example" || l.Entries[0].Domain != "remote.example" ||
		l.Entries[0].From != "alice@example.org" || l.Entries[0].QueueID == "" {
		t.Fatalf("queue list: %+v", l)
	}
	bob, carol := l.Entries[0].ID, l.Entries[1].ID
	id := itoa
	if out := ok(t, cfg, "", "queue", "show", id(bob)); !strings.Contains(out, "<bob@remote.example>") {
		t.Errorf("show: %q", out)
	}
	ok(t, cfg, "", "queue", "hold", id(bob))
	if l := listQueue(t, cfg); !l.Entries[0].Held {
		t.Error("hold did not hold")
	}
	ok(t, cfg, "", "queue", "release", id(bob))
	if l := listQueue(t, cfg); l.Entries[0].Held {
		t.Error("release did not release")
	}
	if out := ok(t, cfg, "", "queue", "retry", "--all"); !strings.Contains(out, "2 entries") {
		t.Errorf("retry --all: %q", out)
	}
	fails(t, 2, "give entry IDs or --all", cfg, "", "queue", "retry")
	fails(t, 2, "not a queue entry ID", cfg, "", "queue", "hold", "x")
	fails(t, 1, "no such queue entry", cfg, "", "queue", "hold", "999")

	// delete --silent: gone, no notice. delete: gone, alice gets a DSN.
	ok(t, cfg, "", "queue", "delete", "--silent", id(carol))
	ok(t, cfg, "", "queue", "delete", id(bob))
	if l := listQueue(t, cfg); len(l.Entries) != 0 {
		t.Fatalf("entries left after delete: %+v", l)
	}
	mbox := ok(t, cfg, "", "mailbox", "export", "alice@example.org")
	if strings.Count(mbox, "\nSubject: Undelivered Mail Returned to Sender") != 1 || !strings.Contains(mbox, "Final-Recipient: rfc822; bob@remote.example") ||
		strings.Contains(mbox, "carol@other.example") || !strings.Contains(mbox, "deleted from the queue by the administrator") {
		t.Errorf("alice's mailbox after delete:\n%s", mbox)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
