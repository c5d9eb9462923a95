package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	crashMessages    = 300                   // messages queued on a.test
	crashConcurrency = 8                     // a.test's [queue] concurrency
	crashDataDelay   = 15 * time.Millisecond // the remote's time to "store" a message
	crashKills       = 2                     // SIGKILLs during the drain
	crashSubmitters  = 4                     // submission connections in parallel
	crashPhase       = 10 * time.Second      // bounds each phase (submission, each third of the drain)
)

// TestQueueSurvivesKill9 checks the queue's promise: across SIGKILLs in the
// middle of a drain, nothing acknowledged is lost, and a message is
// delivered twice only if the crash fell between the remote's 250 and the
// commit that finishes the entry.
//
// a.test (Postern on 127.0.0.2) takes crashMessages messages through
// submission while remote.test (an SMTP receiver in this test, on
// 127.0.0.3, found through the test DNS) is down, so all of them wait in
// the queue. The receiver then comes up, accepting each message after a
// short delay, and a.test is killed with SIGKILL once a third of the
// messages arrived, restarted on the same data, killed again at two thirds
// and restarted, and left to empty its queue.
func TestQueueSurvivesKill9(t *testing.T) {
	t.Parallel()
	start := time.Now()
	port := commonPort(t, "127.0.0.2", "127.0.0.3")
	dns := mxZone(t, map[string]string{"a.test": "127.0.0.2", "remote.test": "127.0.0.3"})
	a := newPeer(t, "a.test", "127.0.0.2", port, dns.Addr, fmt.Sprintf("retry = [\"1s\"]\nconcurrency = %d", crashConcurrency), "alice")
	a.start()

	// Queue the load while remote.test is down (connection refused).
	msgs := crashLoad(crashMessages)
	submitCrashLoad(t, a, msgs)
	wantEntries := 0
	for _, m := range msgs {
		wantEntries += len(m.rcpts)
	}
	if n := len(a.queueList()); n != wantEntries {
		t.Fatalf("a.test's queue holds %d entries after submission, want %d (one per remote recipient)", n, wantEntries)
	}
	t.Logf("%d messages (%d recipients) queued in %v", len(msgs), wantEntries, time.Since(start).Round(time.Millisecond))

	sink := startCrashSink(t, "127.0.0.3", port, crashDataDelay)
	// Everything due now, not spread over the retry interval: the drain
	// then runs as fast as remote.test takes messages, with deliveries in
	// flight whenever a kill comes.
	a.cli("", "queue", "retry", "--all")
	for k := 1; k <= crashKills; k++ {
		threshold := k * len(msgs) / (crashKills + 1)
		deadline := time.Now().Add(crashPhase)
		for sink.distinct() < threshold {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: only %d of %d messages reached remote.test within %v", k, sink.distinct(), threshold, crashPhase)
			}
			time.Sleep(time.Millisecond)
		}
		a.kill()
		// Sessions opened from now on belong to the next run of a.test: the
		// killed process can open none, and it could only have sent a
		// transaction on a session opened (greeted) before it died.
		sink.nextRun()
		d, n := sink.counts()
		t.Logf("kill %d: SIGKILL after %d distinct messages received (%d transactions)", k, d, n)
		a.start()
	}

	eventually(t, crashPhase, func() string {
		if q := a.queueList(); len(q) != 0 {
			return fmt.Sprintf("a.test's queue still holds %d entries (remote.test has %d of %d messages)", len(q), sink.distinct(), len(msgs))
		}
		return ""
	})
	// Finished entries were committed after the remote's 250, so every
	// message must be there now; no further arrivals are expected.
	got := sink.snapshot()

	// Nothing acknowledged is lost: every recipient of every message got it.
	missing := 0
	for _, m := range msgs {
		for _, r := range m.rcpts {
			if len(got[m.id][r]) == 0 {
				if missing++; missing <= 10 {
					t.Errorf("message <%s> never reached %s", m.id, r)
				}
			}
		}
	}
	if missing > 10 {
		t.Errorf("%d recipient deliveries missing in all", missing)
	}

	// Duplicates. The queue finishes an entry (deletes it, with its
	// "delivered" event, in one commit) right after the remote's 250 to
	// DATA. A SIGKILL between the remote's 250 and that commit leaves the
	// entry queued although the remote has the message, so the next run
	// delivers it again: RFC 5321 6.1's unavoidable duplicate, which no MTA
	// can close (the receiver commits before answering, the sender after
	// reading the answer). Here it happens mostly to messages the receiver
	// was still "storing" (crashDataDelay) when a.test died: it stores them
	// and answers 250 to a dead connection. At most [queue] concurrency
	// deliveries are in flight in one run (a slot is held until the commit),
	// so each kill may cause that many duplicated messages, all first
	// received in the killed run and again in a later one; a duplicate
	// within one run, or caused by the last run, is a bug.
	dupMsgs, dupRcpts := 0, 0
	perRun := map[int]int{}
	var dupIDs []string
	for _, m := range msgs {
		dup := false
		for _, r := range m.rcpts {
			runs := got[m.id][r]
			if len(runs) < 2 {
				continue
			}
			dup = true
			dupRcpts += len(runs) - 1
			seen := map[int]bool{}
			for _, run := range runs {
				if seen[run] {
					t.Errorf("message <%s> to %s received twice from run %d of a.test (runs %v): a duplicate without a crash", m.id, r, run, runs)
				}
				seen[run] = true
			}
		}
		if !dup {
			continue
		}
		dupMsgs++
		dupIDs = append(dupIDs, m.id)
		first := crashKills + 1
		for _, r := range m.rcpts {
			for _, run := range got[m.id][r] {
				first = min(first, run)
			}
		}
		perRun[first]++
	}
	for run, n := range perRun {
		switch {
		case run > crashKills:
			t.Errorf("%d messages duplicated with their first copy from the last run, which was not killed", n)
		case n > crashConcurrency:
			t.Errorf("%d messages duplicated across kill %d, want at most %d ([queue] concurrency: deliveries in flight)", n, run, crashConcurrency)
		}
	}
	t.Logf("duplicates: %d of %d messages (%d extra recipient deliveries) received more than once; per killed run %v; allowed at most %d per kill",
		dupMsgs, len(msgs), dupRcpts, perRun, crashConcurrency)

	// The trace: one "delivered" event per recipient (the entry was
	// finished once, whatever the remote saw), from mx.remote.test with its
	// 250. Checked for the duplicated messages and a spread of the others.
	sample := append([]string(nil), dupIDs...)
	for i := 0; i < len(msgs); i += len(msgs) / 8 {
		sample = append(sample, msgs[i].id)
	}
	sample = append(sample, msgs[len(msgs)-1].id)
	byID := map[string]crashMsg{}
	for _, m := range msgs {
		byID[m.id] = m
	}
	for _, id := range sample {
		evs := a.trace("<" + id + ">")
		delivered := eventsOf(evs, "delivered")
		if len(delivered) != len(byID[id].rcpts) {
			t.Errorf("trace of <%s>: %d delivered events, want %d (one per recipient):\n%v", id, len(delivered), len(byID[id].rcpts), evs)
			continue
		}
		for _, r := range byID[id].rcpts {
			n := 0
			for _, e := range delivered {
				if strings.Contains(e.Detail, "to=<"+r+">") {
					n++
					for _, want := range []string{"host=mx.remote.test", "ip=127.0.0.3", `reply="250 `} {
						if !strings.Contains(e.Detail, want) {
							t.Errorf("trace of <%s>: delivered event %q lacks %q", id, e.Detail, want)
						}
					}
				}
			}
			if n != 1 {
				t.Errorf("trace of <%s>: %d delivered events for %s, want 1:\n%v", id, n, r, evs)
			}
		}
	}

	a.stop()
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// crashMsg is one message of the load.
type crashMsg struct {
	id    string // Message-ID without angle brackets
	rcpts []string
}

// crashLoad makes n messages from alice@a.test, each with its own
// Message-ID, to one of five users of remote.test, every third one also to
// list@remote.test (two recipients, one transaction).
func crashLoad(n int) []crashMsg {
	msgs := make([]crashMsg, n)
	for i := range msgs {
		m := crashMsg{id: fmt.Sprintf("crash-%03d@a.test", i), rcpts: []string{fmt.Sprintf("u%d@remote.test", i%5)}}
		if i%3 == 0 {
			m.rcpts = append(m.rcpts, "list@remote.test")
		}
		msgs[i] = m
	}
	return msgs
}

func (m crashMsg) text() string {
	return fmt.Sprintf("From: Alice <alice@a.test>\r\nTo: %s\r\nSubject: crash load %s\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\nOne of many, queued before the remote came up.\r\n",
		strings.Join(m.rcpts, ", "), m.id, m.id, time.Now().Format(time.RFC1123Z))
}

// submitCrashLoad sends msgs as alice@a.test through a's submissions
// listener (implicit TLS, AUTH PLAIN) on a few connections at once, and
// fails unless each one got its 250.
func submitCrashLoad(t *testing.T, a *peer, msgs []crashMsg) {
	t.Helper()
	user := "alice@a.test"
	errs := make(chan error, crashSubmitters)
	for w := 0; w < crashSubmitters; w++ {
		go func(w int) {
			errs <- func() error {
				d := &net.Dialer{Timeout: 5 * time.Second}
				conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(a.ip, itoa(a.subsPort)), &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					return err
				}
				c := smtp.NewClient(conn)
				defer c.Close()
				c.CommandTimeout, c.SubmissionTimeout = crashPhase, crashPhase
				if err := c.Hello("laptop.a.test"); err != nil {
					return err
				}
				if err := c.Auth(sasl.NewPlainClient("", user, a.password(user))); err != nil {
					return fmt.Errorf("AUTH: %w", err)
				}
				for i := w; i < len(msgs); i += crashSubmitters {
					m := msgs[i]
					if err := c.Mail(user, nil); err != nil {
						return fmt.Errorf("<%s>: MAIL: %w", m.id, err)
					}
					for _, r := range m.rcpts {
						if err := c.Rcpt(r, nil); err != nil {
							return fmt.Errorf("<%s>: RCPT %s: %w", m.id, r, err)
						}
					}
					wc, err := c.Data()
					if err != nil {
						return fmt.Errorf("<%s>: DATA: %w", m.id, err)
					}
					if _, err := io.WriteString(wc, m.text()); err != nil {
						return fmt.Errorf("<%s>: writing: %w", m.id, err)
					}
					resp, err := wc.CloseWithResponse()
					if err != nil {
						return fmt.Errorf("<%s>: end of DATA: %w", m.id, err)
					}
					if !strings.Contains(resp.StatusText, "queued as") {
						return fmt.Errorf("<%s>: 250 %q does not say queued", m.id, resp.StatusText)
					}
				}
				return c.Quit()
			}()
		}(w)
	}
	timeout := time.After(crashPhase)
	for w := 0; w < crashSubmitters; w++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("submission: %v", err)
			}
		case <-timeout:
			t.Fatalf("submission of %d messages took more than %v", len(msgs), crashPhase)
		}
	}
}

// crashSink is remote.test: a go-smtp server that accepts every message
// after a delay and records, for each Message-ID and recipient, the run of
// a.test (1, 2, ...) whose session delivered each copy.
type crashSink struct {
	srv   *smtp.Server
	delay time.Duration

	mu   sync.Mutex
	run  int
	got  map[string]map[string][]int // Message-ID -> recipient -> runs
	txns int
}

func startCrashSink(t *testing.T, ip string, port int, delay time.Duration) *crashSink {
	t.Helper()
	s := &crashSink{delay: delay, run: 1, got: map[string]map[string][]int{}}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "mx.remote.test"
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", net.JoinHostPort(ip, itoa(port)))
	if err != nil {
		t.Fatalf("remote.test: %v", err)
	}
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *crashSink) nextRun() {
	s.mu.Lock()
	s.run++
	s.mu.Unlock()
}

// distinct is the number of different messages received.
func (s *crashSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// counts returns the distinct messages and the transactions received.
func (s *crashSink) counts() (distinct, transactions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got), s.txns
}

// snapshot copies what was received.
func (s *crashSink) snapshot() map[string]map[string][]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string][]int, len(s.got))
	for id, rs := range s.got {
		out[id] = map[string][]int{}
		for r, runs := range rs {
			out[id][r] = append([]int(nil), runs...)
			sort.Ints(out[id][r])
		}
	}
	return out
}

func (s *crashSink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &crashSession{s: s, run: s.run}, nil
}

type crashSession struct {
	s     *crashSink
	run   int
	rcpts []string
}

func (c *crashSession) Mail(from string, opts *smtp.MailOptions) error { c.rcpts = nil; return nil }

func (c *crashSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	c.rcpts = append(c.rcpts, strings.ToLower(to))
	return nil
}

// Data reads the whole message, "stores" it for the sink's delay and then
// records it: once the data is in, the remote has the message, and its 250
// may or may not reach a sender killed meanwhile.
func (c *crashSession) Data(r io.Reader) error {
	m, err := mail.ReadMessage(bufio.NewReader(r))
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, m.Body); err != nil {
		return err
	}
	id := strings.Trim(m.Header.Get("Message-Id"), "<>")
	if id == "" {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "no Message-ID"}
	}
	time.Sleep(c.s.delay)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.txns++
	if c.s.got[id] == nil {
		c.s.got[id] = map[string][]int{}
	}
	for _, rc := range c.rcpts {
		c.s.got[id][rc] = append(c.s.got[id][rc], c.run)
	}
	return nil
}

func (c *crashSession) Reset()        { c.rcpts = nil }
func (c *crashSession) Logout() error { return nil }
