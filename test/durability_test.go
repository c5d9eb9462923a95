package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	loadBeforeKill = 1500 * time.Millisecond // load time before SIGKILL
	minAcksForKill = 20                      // and at least this many 250s
	loadDeadline   = 15 * time.Second        // too slow a load fails the test
)

// loadUsers maps each recipient the load uses to the users it reaches.
var loadUsers = map[string][]string{
	"alice@example.test": {"alice@example.test"},
	"bob@example.test":   {"bob@example.test"},
	"team@example.test":  {"alice@example.test", "bob@example.test"},
}

// TestKill9UnderLoad runs concurrent smtplib clients, kills the server with
// SIGKILL while they send, and checks after a restart that every message
// acknowledged with 250 is in its recipients' INBOX exactly once, that no
// message is stored twice or truncated, and that the server works again.
// It does this twice, so recovery from one crash is followed by another.
func TestKill9UnderLoad(t *testing.T) {
	python(t)
	s := mxWithUsers(t, "", "alice", "bob")
	s.cli("", "alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
	s.start()

	// acked[user][id] counts the 250s for messages that reach user.
	acked := map[string]map[string]bool{"alice@example.test": {}, "bob@example.test": {}}
	for round := 1; round <= 2; round++ {
		prefix := "r" + strconv.Itoa(round)
		acks := loadAndKill(t, s, prefix)
		for id, rcpts := range acks {
			for _, r := range rcpts {
				for _, u := range loadUsers[r] {
					acked[u][id] = true
				}
			}
		}
		t.Logf("round %d: %d messages acknowledged before SIGKILL", round, len(acks))
		s.start() // the same data directory and ports
	}

	for user, ids := range acked {
		msgs := s.export(user, "")
		seen := map[string]int{}
		for _, m := range msgs {
			id, err := checkLoadMessage(m, user)
			if err != nil {
				t.Errorf("%s: %v", user, err)
				continue
			}
			seen[id]++
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("%s: message %s stored %d times, want once", user, id, n)
			}
		}
		missing := 0
		for id := range ids {
			if seen[id] == 0 {
				missing++
				if missing <= 10 {
					t.Errorf("%s: message %s was acknowledged with 250 but is not in the INBOX", user, id)
				}
			}
		}
		if missing > 10 {
			t.Errorf("%s: %d acknowledged messages missing in all", user, missing)
		}
		if n := s.mailboxCount(user, "INBOX"); n != len(msgs) {
			t.Errorf("%s: mailbox list counts %d messages, export has %d", user, n, len(msgs))
		}
		t.Logf("%s: %d acknowledged, %d stored (%d stored without a 250, which is allowed)",
			user, len(ids), len(msgs), len(msgs)-len(ids)+missing)
	}

	// The server recovered: it accepts and stores new mail.
	r := smtplibSend(t, s, "--to", "alice@example.test", "--subject", "after the crashes")
	queueID(t, r.Data)
	wantOne(t, "alice's INBOX", bySubject(s.export("alice@example.test", ""), "after the crashes"))
}

// loadAndKill runs py/load.py against s, SIGKILLs the server once the load
// has run for loadBeforeKill with at least minAcksForKill acknowledgements,
// and returns the recipients of every acknowledged message by id.
func loadAndKill(t *testing.T, s *server, prefix string) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), filepath.Join("py", "load.py"),
		"--port", itoa(s.smtpPort), "--prefix", prefix, "--workers", "12", "--duration", "20",
		"--rcpt-set", "alice@example.test", "--rcpt-set", "bob@example.test",
		"--rcpt-set", "team@example.test", "--rcpt-set", "alice@example.test,bob@example.test")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	acks := map[string][]string{}
	done := ""
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	killed := false
	for lines != nil {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			f := strings.Fields(l)
			switch {
			case len(f) >= 4 && f[0] == "ACK":
				if _, dup := acks[f[1]]; dup {
					t.Errorf("load: message %s acknowledged twice", f[1])
				}
				acks[f[1]] = strings.Split(f[2], ",")
				if !queuedRe.MatchString(strings.Join(f[3:], " ")) {
					t.Errorf("load: 250 reply %q is not \"2.0.0 OK: queued as <qid>\"", strings.Join(f[3:], " "))
				}
			case len(f) > 0 && f[0] == "DONE":
				done = l
			default:
				t.Errorf("load: unexpected output %q", l)
			}
		case <-tick.C:
		}
		if !killed && time.Since(start) >= loadBeforeKill && len(acks) >= minAcksForKill {
			if !s.running() {
				t.Fatalf("postern exited during the load")
			}
			s.kill()
			killed = true
		}
		if !killed && time.Since(start) > loadDeadline {
			cmd.Process.Kill()
			t.Fatalf("load got only %d acknowledgements in %v", len(acks), loadDeadline)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("load.py: %v\nstderr:\n%s", err, stderr.String())
	}
	if !killed {
		t.Fatalf("load.py ended before the server was killed (%s)", done)
	}
	if done == "" {
		t.Errorf("load.py printed no DONE line; stderr:\n%s", stderr.String())
	}
	return acks
}

var loadIDRe = regexp.MustCompile(`^load (r\d-w\d\d-m\d{4})$`)

// checkLoadMessage checks that m is a complete copy of a message written
// by py/load.py and delivered to user, and returns its id.
func checkLoadMessage(m mboxMessage, user string) (string, error) {
	subj := m.Header.Get("Subject")
	sm := loadIDRe.FindStringSubmatch(subj)
	if sm == nil {
		return "", fmt.Errorf("unexpected message with Subject %q", subj)
	}
	id := sm[1]
	if got := m.Header.Get("Message-Id"); got != "<"+id+"@load.example.org>" {
		return id, fmt.Errorf("message %s has Message-ID %q", id, got)
	}
	if got := m.Header.Get("Delivered-To"); got != user {
		return id, fmt.Errorf("message %s has Delivered-To %q", id, got)
	}
	if got := m.Header.Get("Return-Path"); got != "<load@example.org>" {
		return id, fmt.Errorf("message %s has Return-Path %q", id, got)
	}
	n, err := strconv.Atoi(m.Header.Get("X-Load-Lines"))
	if err != nil {
		return id, fmt.Errorf("message %s: bad X-Load-Lines %q", id, m.Header.Get("X-Load-Lines"))
	}
	var want strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&want, "line %04d of %s %s\n", i, id, strings.Repeat("y", 40))
	}
	fmt.Fprintf(&want, "END-OF-MESSAGE %s\n", id)
	if m.Body != want.String() {
		return id, fmt.Errorf("message %s is truncated or altered: body has %d bytes, want %d; ends %q",
			id, len(m.Body), want.Len(), m.Body[max(0, len(m.Body)-80):])
	}
	return id, nil
}
