//go:build !windows

package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/postfixtest"
)

var (
	inboundN        = flag.Int("inbound.n", 5000, "messages sent by BenchmarkSMTPInboundVsPostfix (the issue's figure is 20000)")
	inboundSessions = flag.Int("inbound.sessions", 20, "concurrent SMTP sessions")
)

// BenchmarkSMTPInboundVsPostfix sends the same load, -inbound.n messages of
// 10 KiB over -inbound.sessions sessions, to Postern and to a private
// Postfix delivering to a Maildir, in one run, and reports both rates and
// their ratio. Durability: Postern answers 250 once the message is in the
// recipient's mailbox (index commit with a WAL fsync shared by the batch);
// Postfix answers 250 once its queue file is fsync'd, and delivers to the
// Maildir (another fsync per message) afterwards, so for Postfix both the
// acceptance rate and the rate until the last Maildir file exists are given.
//
//	go test -run '^$' -bench InboundVsPostfix -benchtime 1x ./bench/ -inbound.n 20000
func BenchmarkSMTPInboundVsPostfix(b *testing.B) {
	if why := postfixtest.Missing(); why != "" {
		b.Skip("Postfix cannot run here: " + why)
	}
	n, sessions := *inboundN, *inboundSessions
	for i := 0; i < b.N; i++ {
		s := startPostern(b)
		pr := runLoad(b, s.smtp, "bench@bench.test", n, sessions)
		m := s.metrics(b)
		fsyncs := m["postern_store_fsyncs_total"]

		pfAddr := freePort(b)
		pf := postfixtest.Start(b, postfixtest.Options{
			Hostname:  "mx.pf.test",
			Listen:    []string{pfAddr},
			Mailboxes: []string{"bench@pf.test"},
			Main:      []string{"smtpd_client_connection_count_limit = 0", "default_process_limit = 200"},
		})
		pfStart := time.Now()
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
		fDelivered := time.Since(pfStart)
		pf.Stop()
		if delivered < n {
			b.Fatalf("Postfix delivered %d of %d messages to the Maildir", delivered, n)
		}

		rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
		b.ReportMetric(rate(pr.elapsed), "postern-msgs/s")
		b.ReportMetric(rate(fr.elapsed), "postfix-accept-msgs/s")
		b.ReportMetric(rate(fDelivered), "postfix-maildir-msgs/s")
		b.ReportMetric(rate(pr.elapsed)/rate(fr.elapsed), "ratio")
		b.ReportMetric(float64(pr.p99.Microseconds())/1000, "postern-p99-ms")
		b.ReportMetric(float64(fr.p99.Microseconds())/1000, "postfix-p99-ms")
		b.ReportMetric(fsyncs/float64(n), "postern-fsyncs/msg")
		fmt.Fprintf(os.Stderr, "SMTP inbound, %d x 10 KiB, %d sessions: Postern %.0f msg/s (p50 %v, p99 %v, %.2f fsyncs/msg); Postfix accept %.0f msg/s (p50 %v, p99 %v), all in Maildir %.0f msg/s; ratio %.2f (vs accept), %.2f (vs Maildir)\n",
			n, sessions, rate(pr.elapsed), pr.p50, pr.p99, fsyncs/float64(n), rate(fr.elapsed), fr.p50, fr.p99, rate(fDelivered),
			rate(pr.elapsed)/rate(fr.elapsed), rate(pr.elapsed)/rate(fDelivered))
	}
}
