//go:build !windows

package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

var (
	mailboxMax   = flag.Int("mailbox.max", 100000, "largest INBOX measured by BenchmarkLargeMailbox (sizes 10k, 25k, 50k, 100k up to it)")
	mailboxSMTP  = flag.Int("mailbox.smtp", 2000, "messages delivered over SMTP at the smallest and the largest size")
	mailboxReps  = flag.Int("mailbox.reps", 5, "times each command is timed per size (the median is reported)")
	mailboxSizes = []int{10000, 25000, 50000, 100000}
)

// BenchmarkLargeMailbox fills INBOX to 10,000, 25,000, 50,000 and 100,000
// small messages (up to -mailbox.max) and times, at each size, SELECT
// INBOX, UID FETCH 1:* (FLAGS) and UID SEARCH HEADER Subject (1 message in
// 100 matches) over implicit TLS, against Postern and against Dovecot's
// IMAP (high-performance mode, Maildir) in the same run. Each figure is the
// median of -mailbox.reps runs after one untimed run (Dovecot indexes new
// Maildir files then; Postern's SQLite pages are read into the cache), so
// it is the cost a client sees on a mailbox the server already knows. The
// growth factor is the time at the largest size over the time at 10,000:
// 10 would be linear for 100,000.
//
// Postern is filled through its store (internal/store/sqlite, the same
// data directory, from this process), Dovecot by writing its Maildir
// files; neither goes through SMTP or APPEND. At the smallest and the
// largest size, -mailbox.smtp messages of 10 KiB are delivered to
// Postern's INBOX over 20 SMTP sessions: the acceptance rate must stay
// flat as the mailbox grows (DESIGN.md).
//
//	go test -run '^$' -bench LargeMailbox -benchtime 1x ./bench/ -mailbox.max 100000
func BenchmarkLargeMailbox(b *testing.B) {
	var sizes []int
	for _, n := range mailboxSizes {
		if n <= *mailboxMax {
			sizes = append(sizes, n)
		}
	}
	if len(sizes) == 0 {
		sizes = []int{*mailboxMax}
	}
	for range b.N {
		pst := startPosternEmpty(b)
		dove, haveDovecot := startDovecotEmpty(b)
		if !haveDovecot {
			b.Log("Dovecot's IMAP is not available (apt-get install -y dovecot-imapd, as root): Postern only")
		}
		type timing struct{ sel, fetch, search time.Duration }
		var first, last map[string]timing
		var smtpFirst, smtpLast float64
		pFilled, dFilled := 0, 0
		for _, n := range sizes {
			res := map[string]timing{}
			t0 := time.Now()
			pFilled = fillPostern(b, pst.dir, pFilled, n)
			b.Logf("postern: %d messages in INBOX (%v to fill)", pFilled, time.Since(t0).Round(time.Millisecond))
			s, f, q := timeMailbox(b, pst.addr, pFilled)
			res["postern"] = timing{s, f, q}
			if haveDovecot {
				dFilled = fillMaildir(b, dove.dir, dFilled, n)
				s, f, q := timeMailbox(b, dove.addr, dFilled)
				res["dovecot"] = timing{s, f, q}
			}
			k := fmt.Sprintf("%dk", n/1000)
			for srv, t := range res {
				b.ReportMetric(ms(t.sel), srv+"-select-"+k+"-ms")
				b.ReportMetric(ms(t.fetch), srv+"-fetchflags-"+k+"-ms")
				b.ReportMetric(ms(t.search), srv+"-search-"+k+"-ms")
				b.Logf("%s at %d: SELECT %v, UID FETCH 1:* (FLAGS) %v, UID SEARCH HEADER Subject %v", srv, n, t.sel, t.fetch, t.search)
			}
			if first == nil {
				first = res
			}
			last = res
			if n == sizes[0] || n == sizes[len(sizes)-1] {
				r := runLoad(b, pst.smtp, imapUser, *mailboxSMTP, 20)
				rate := float64(*mailboxSMTP) / r.elapsed.Seconds()
				b.ReportMetric(rate, "postern-smtp-"+k+"-msgs/s")
				b.Logf("postern at %d: SMTP %d x 10 KiB at %.0f msg/s (p99 %v)", n, *mailboxSMTP, rate, r.p99)
				if n == sizes[0] {
					smtpFirst = rate
				}
				smtpLast = rate
				pFilled += *mailboxSMTP
			}
		}
		if len(sizes) > 1 {
			for srv := range last {
				b.ReportMetric(last[srv].sel.Seconds()/first[srv].sel.Seconds(), srv+"-select-growth")
				b.ReportMetric(last[srv].fetch.Seconds()/first[srv].fetch.Seconds(), srv+"-fetchflags-growth")
				b.ReportMetric(last[srv].search.Seconds()/first[srv].search.Seconds(), srv+"-search-growth")
			}
			b.ReportMetric(smtpLast/smtpFirst, "postern-smtp-flatness")
		}
	}
}

// largeMessage is message i of the large mailbox: about 1 KiB, one in a
// hundred with "needle" in its Subject; nine in ten are \Seen.
func largeMessage(i int) []byte {
	subject := fmt.Sprintf("message %d", i)
	if i%100 == 0 {
		subject = fmt.Sprintf("needle %d", i)
	}
	var m strings.Builder
	fmt.Fprintf(&m, "From: Load <load@example.org>\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@large.example.org>\r\n\r\n", imapUser, subject, i)
	for m.Len() < 1000 {
		m.WriteString("The quick brown fox jumps over the lazy dog. 0123456789\r\n")
	}
	return []byte(m.String())
}

// fillPostern appends messages have+1..n to the INBOX of Postern's data
// directory dir through the store (which several processes may open).
func fillPostern(b *testing.B, dir string, have, n int) int {
	st, err := sqlite.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	u, err := st.UserByAddress(ctx, imapUser)
	if err != nil {
		b.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	next := atomic.Int64{}
	next.Store(int64(have))
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 64 { // enough appends in flight for the store's group commit
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				bw, err := st.NewBlob()
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				bw.Write(largeMessage(i))
				var flags store.Flags
				if i%10 != 0 {
					flags = store.FlagSeen
				}
				if _, _, err := st.AppendMessage(ctx, mb.ID, &store.Append{Blob: bw, Flags: flags}); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("filling Postern: %v", err)
	}
	return n
}

// fillMaildir writes messages have+1..n into Dovecot's Maildir as files
// already seen by a client (cur/, with the S flag as for Postern).
func fillMaildir(b *testing.B, maildir string, have, n int) int {
	cur := filepath.Join(maildir, "cur")
	for _, d := range []string{maildir, cur, filepath.Join(maildir, "new"), filepath.Join(maildir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
		os.Chown(d, 65534, 65534)
	}
	now := time.Now().Unix()
	for i := have + 1; i <= n; i++ {
		msg := largeMessage(i)
		flags := "S"
		if i%10 == 0 {
			flags = ""
		}
		name := filepath.Join(cur, fmt.Sprintf("%d.M%dP1.bench,S=%d:2,%s", now, i, len(msg), flags))
		if err := os.WriteFile(name, msg, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Chown(name, 65534, 65534); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// rawIMAP is a minimal IMAP client that times commands without parsing
// their answers beyond the tagged status, so that the client's own cost
// stays small next to a server's answer for 100,000 messages.
type rawIMAP struct {
	c   *tls.Conn
	br  *bufio.Reader
	tag int
}

func dialRawIMAP(b *testing.B, addr string) *rawIMAP {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	r := &rawIMAP{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	if _, err := r.br.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	r.cmd(b, fmt.Sprintf("LOGIN %s %s", imapUser, imapPass))
	return r
}

// cmd sends one command and reads until its tagged answer, which must be
// OK; it returns the untagged lines counted and the time taken.
func (r *rawIMAP) cmd(b *testing.B, command string) (int, time.Duration) {
	r.tag++
	tag := fmt.Sprintf("t%d ", r.tag)
	start := time.Now()
	if _, err := r.c.Write([]byte(tag + command + "\r\n")); err != nil {
		b.Fatal(err)
	}
	lines := 0
	for {
		line, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue // a long line: the rest follows
		}
		if err != nil {
			b.Fatalf("%s: %v", command, err)
		}
		if strings.HasPrefix(string(line), tag) {
			if !strings.HasPrefix(string(line[len(tag):]), "OK") {
				b.Fatalf("%s: %s", command, line)
			}
			return lines, time.Since(start)
		}
		lines++
	}
}

// timeMailbox times SELECT, UID FETCH 1:* (FLAGS) and UID SEARCH HEADER
// Subject on a mailbox of n messages: the median of -mailbox.reps runs
// after an untimed one, each on a fresh SELECT.
func timeMailbox(b *testing.B, addr string, n int) (sel, fetch, search time.Duration) {
	r := dialRawIMAP(b, addr)
	defer r.c.Close()
	var sels, fetches, searches []time.Duration
	for i := 0; i <= *mailboxReps; i++ {
		_, ds := r.cmd(b, "SELECT INBOX")
		lines, df := r.cmd(b, "UID FETCH 1:* (FLAGS)")
		if lines < n {
			b.Fatalf("%s: UID FETCH 1:* (FLAGS) answered %d lines for %d messages", addr, lines, n)
		}
		_, dq := r.cmd(b, "UID SEARCH HEADER Subject needle")
		if i > 0 {
			sels, fetches, searches = append(sels, ds), append(fetches, df), append(searches, dq)
		}
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	return median(sels), median(fetches), median(searches)
}
