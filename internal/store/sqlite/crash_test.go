//go:build !windows

package sqlite

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/store"
)

// The crash test runs this test binary as a child that delivers messages
// as fast as it can and prints "ACK <qid>" after each Deliver returns nil;
// the parent kills it with SIGKILL mid-stream, reopens the store and checks
// that every acknowledged message is there exactly once and complete.
const crashChildEnv = "POSTERN_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

func checkedMessage(seq int, rnd *rand.Rand) string {
	n := 2000 + rnd.Intn(30000)
	if seq%4 == 3 { // every fourth message is large enough to live in a file
		n = 150<<10 + rnd.Intn(150<<10)
	}
	body := make([]byte, n)
	for i := range body {
		body[i] = 'a' + byte(rnd.Intn(26))
		if i%70 == 69 {
			body[i-1], body[i] = '\r', '\n'
		}
	}
	sum := sha256.Sum256(body)
	return fmt.Sprintf("Subject: crash %d\r\nX-Check: %s\r\n\r\n%s\r\n", seq, hex.EncodeToString(sum[:]), body)
}

func verifyChecked(msg string) error {
	i := strings.Index(msg, "X-Check: ")
	j := strings.Index(msg, "\r\n\r\n")
	if i < 0 || j < 0 {
		return fmt.Errorf("no X-Check header or header end")
	}
	want := msg[i+9 : i+9+64]
	body := strings.TrimSuffix(msg[j+4:], "\r\n")
	sum := sha256.Sum256([]byte(body))
	if hex.EncodeToString(sum[:]) != want {
		return fmt.Errorf("body checksum mismatch (len %d)", len(body))
	}
	return nil
}

func crashChild(dir string) {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	u, err := s.UserByAddress(context.Background(), "crash@example.org")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 12; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(time.Now().UnixNano() + int64(g)))
			for i := 0; i < 100000; i++ {
				bw, err := s.NewBlob()
				if err != nil {
					return
				}
				io.WriteString(bw, checkedMessage(i, rnd))
				d := &store.Delivery{Blob: bw, From: "x@example.org", Recipients: []store.LocalRecipient{{UserID: u.ID, Prefix: []byte("Delivered-To: crash@example.org\r\n")}}}
				if err := s.Deliver(context.Background(), d); err != nil {
					continue
				}
				mu.Lock()
				fmt.Fprintf(out, "ACK %s\n", bw.QueueID())
				out.Flush()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}

func TestCrashKill9KeepsEveryAcknowledgedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s, "crash@example.org")
	s.Close()

	acked := map[string]bool{}
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		// Kill after a varying number of acknowledgements, so the kill lands
		// at different points of the write/fsync/commit/promote cycle.
		killAfter := 150 + round*97
		n := 0
		deadline := time.Now().Add(20 * time.Second)
		for sc.Scan() {
			if qid, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				acked[qid] = true
				n++
			}
			if n >= killAfter || time.Now().After(deadline) {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		// Acknowledgements printed before the kill took effect count too.
		for sc.Scan() {
			if qid, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				acked[qid] = true
			}
		}
		cmd.Wait()
		if n < killAfter {
			t.Fatalf("round %d: child acknowledged only %d messages before the deadline", round, n)
		}
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	mb, err := s.MailboxByName(ctx, u.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	es, err := s.Entries(ctx, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range es {
		count[e.QueueID]++
		msg := readEntry(t, s, mb.ID, e.UID)
		if err := verifyChecked(msg); err != nil {
			t.Fatalf("entry %d (%s) is damaged: %v", e.UID, e.QueueID, err)
		}
	}
	for qid := range acked {
		if count[qid] != 1 {
			t.Fatalf("acknowledged message %s present %d times", qid, count[qid])
		}
	}
	for qid, c := range count {
		if c != 1 {
			t.Fatalf("message %s present %d times", qid, c)
		}
	}
	if int(mb.Messages) != len(es) {
		t.Fatalf("mailbox count %d, entries %d", mb.Messages, len(es))
	}
	left, _ := os.ReadDir(filepath.Join(dir, "blobs", "incoming"))
	if len(left) != 0 {
		t.Fatalf("%d files left in incoming after recovery", len(left))
	}
	t.Logf("%d acknowledged, %d stored (the rest committed before the kill but unacknowledged)", len(acked), len(es))
}
