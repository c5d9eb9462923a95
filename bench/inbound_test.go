//go:build !windows

package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/postfixtest"
)

var (
	inboundN        = flag.Int("inbound.n", 5000, "messages sent by BenchmarkSMTPInboundVsPeers (the issue's figure is 20000)")
	inboundSessions = flag.Int("inbound.sessions", 20, "concurrent SMTP sessions")
)

// BenchmarkSMTPInboundSmtpSource is BenchmarkSMTPInboundVsPeers with
// Postfix's smtp-source as the load generator (smtp-source -d -s 20 -m N
// -l 10240), the issue's own tool, a C client lighter than the Go one.
// smtp-source does not time transactions, so only rates and CPU are
// reported.
//
//	go test -run '^$' -bench InboundSmtpSource -benchtime 1x ./bench/ -inbound.n 20000 -maddy.bin "$(bench/maddy/build.sh)"
func BenchmarkSMTPInboundSmtpSource(b *testing.B) {
	if _, err := smtpSourcePath(); err != nil {
		b.Skip("smtp-source (Debian package postfix) is not installed")
	}
	smtpSourceLoad = true
	defer func() { smtpSourceLoad = false }()
	BenchmarkSMTPInboundVsPeers(b)
}

// BenchmarkSMTPInboundVsPeers sends the same load, -inbound.n messages of
// 10 KiB over -inbound.sessions sessions, to Postern, to a private Postfix
// delivering to a Maildir and to maddy delivering to its imapsql storage,
// one after the other in one run, and reports each one's rate, p50/p99
// transaction latency (MAIL to 250) and CPU seconds per 1,000 messages
// (the server's processes, from /proc), and the Postern/Postfix ratio. A
// peer that cannot run here (no postfix or not root; no maddy binary, see
// bench/maddy/build.sh) is left out and said so.
//
// Durability: Postern answers 250 once the message is in the recipient's
// mailbox (index commit with a WAL fsync shared by the batch). Postfix
// answers 250 once its queue file is fsync'd, and delivers to the Maildir
// (another fsync per message) afterwards, so for Postfix both the
// acceptance rate and the rate until the last Maildir file exists are
// given, and its CPU counts the delivery. maddy answers 250 once the body
// file is fsync'd and the SQLite index committed without fsync (see
// maddyConf).
//
//	go test -run '^$' -bench InboundVsPeers -benchtime 1x ./bench/ -inbound.n 20000 -maddy.bin "$(bench/maddy/build.sh)"
func BenchmarkSMTPInboundVsPeers(b *testing.B) {
	pfMissing := postfixtest.Missing()
	maddy, maddyMissing := maddyPath()
	if pfMissing != "" && maddyMissing != "" {
		b.Skip("no peer can run here: Postfix: " + pfMissing + "; maddy: " + maddyMissing)
	}
	n, sessions := *inboundN, *inboundSessions
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	// cpuPer1k is CPU seconds per 1,000 messages.
	cpuPer1k := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(n) }
	report := func(name string, r loadResult, cpu time.Duration, extra string) {
		b.ReportMetric(rate(r.elapsed), name+"-msgs/s")
		if r.p50 > 0 {
			b.ReportMetric(float64(r.p50.Microseconds())/1000, name+"-p50-ms")
			b.ReportMetric(float64(r.p99.Microseconds())/1000, name+"-p99-ms")
		}
		if cpu > 0 {
			b.ReportMetric(cpuPer1k(cpu), name+"-cpu-s/1kmsg")
		}
		fmt.Fprintf(os.Stderr, "SMTP inbound, %d x 10 KiB, %d sessions: %s %.0f msg/s (p50 %v, p99 %v, %.2f CPU s/1,000 msgs)%s\n",
			n, sessions, name, rate(r.elapsed), r.p50, r.p99, cpuPer1k(cpu), extra)
	}
	for i := 0; i < b.N; i++ {
		s := startPostern(b)
		cpu0, _ := treeCPU(s.cmd.Process.Pid)
		pr := runLoad(b, s.smtp, "bench@bench.test", n, sessions)
		cpu1, _ := treeCPU(s.cmd.Process.Pid)
		m := s.metrics(b)
		fsyncs := m["postern_store_fsyncs_total"]
		b.ReportMetric(fsyncs/float64(n), "postern-fsyncs/msg")
		report("postern", pr, cpu1-cpu0, fmt.Sprintf(", %.2f fsyncs/msg", fsyncs/float64(n)))

		if pfMissing == "" {
			fr, fDelivered, fcpu := inboundPostfix(b, n, sessions)
			b.ReportMetric(rate(fr.elapsed), "postfix-accept-msgs/s")
			b.ReportMetric(rate(fDelivered), "postfix-maildir-msgs/s")
			if fr.p50 > 0 {
				b.ReportMetric(float64(fr.p50.Microseconds())/1000, "postfix-p50-ms")
				b.ReportMetric(float64(fr.p99.Microseconds())/1000, "postfix-p99-ms")
			}
			if fcpu > 0 {
				b.ReportMetric(cpuPer1k(fcpu), "postfix-cpu-s/1kmsg")
			}
			b.ReportMetric(rate(pr.elapsed)/rate(fr.elapsed), "ratio")
			fmt.Fprintf(os.Stderr, "SMTP inbound, %d x 10 KiB, %d sessions: Postfix accept %.0f msg/s (p50 %v, p99 %v), all in Maildir %.0f msg/s, %.2f CPU s/1,000 msgs; Postern/Postfix %.2f (vs accept), %.2f (vs Maildir)\n",
				n, sessions, rate(fr.elapsed), fr.p50, fr.p99, rate(fDelivered), cpuPer1k(fcpu),
				rate(pr.elapsed)/rate(fr.elapsed), rate(pr.elapsed)/rate(fDelivered))
		} else {
			fmt.Fprintln(os.Stderr, "SMTP inbound: no Postfix:", pfMissing)
		}

		if maddyMissing == "" {
			md := startMaddy(b, maddy, "maddy.test", []string{"bench@maddy.test"})
			cpu0, _ := treeCPU(md.cmd.Process.Pid)
			mr := runLoad(b, md.smtp, "bench@maddy.test", n, sessions)
			cpu1, _ := treeCPU(md.cmd.Process.Pid)
			md.stop()
			if got := md.messages(); got != n {
				b.Fatalf("maddy stored %d of %d messages\n%s", got, n, md.log())
			}
			report("maddy", mr, cpu1-cpu0, fmt.Sprintf("; Postern/maddy %.2f", rate(pr.elapsed)/rate(mr.elapsed)))
		} else {
			fmt.Fprintln(os.Stderr, "SMTP inbound: no maddy:", maddyMissing)
		}
	}
}

// inboundPostfix runs the load against a private Postfix and waits until
// every message is in the Maildir. It returns the acceptance load, the time
// until the last delivery and the CPU time of all of the instance's
// processes over that time.
func inboundPostfix(b *testing.B, n, sessions int) (loadResult, time.Duration, time.Duration) {
	pfAddr := freePort(b)
	pf := postfixtest.Start(b, postfixtest.Options{
		Hostname:  "mx.pf.test",
		Listen:    []string{pfAddr},
		Mailboxes: []string{"bench@pf.test"},
		Main:      []string{"smtpd_client_connection_count_limit = 0", "default_process_limit = 200"},
	})
	defer pf.Stop()
	master := 0
	if pid, err := os.ReadFile(filepath.Join(pf.Dir, "queue", "pid", "master.pid")); err == nil {
		master, _ = strconv.Atoi(strings.TrimSpace(string(pid)))
	}
	cpu0, err0 := treeCPU(master)
	start := time.Now()
	fr := runLoad(b, pfAddr, "bench@pf.test", n, sessions)
	maildir := filepath.Join(pf.Maildir("bench@pf.test"), "new")
	deadline := time.Now().Add(10 * time.Minute)
	delivered := 0
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(maildir)
		if delivered = len(ents); delivered >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := time.Since(start)
	cpu1, err1 := treeCPU(master)
	if delivered < n {
		b.Fatalf("Postfix delivered %d of %d messages to the Maildir", delivered, n)
	}
	if err0 != nil || err1 != nil {
		return fr, all, 0
	}
	return fr, all, cpu1 - cpu0
}
