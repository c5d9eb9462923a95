//go:build !windows

package bench

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/postern-mail/postern/internal/dnsx/dnstest"
	"github.com/postern-mail/postern/internal/postfixtest"
)

var (
	drainN        = flag.Int("drain.n", 1000, "messages queued for BenchmarkQueueDrain (the issue's figure is 10000)")
	drainDomains  = flag.Int("drain.domains", 50, "destination domains the drained messages are spread over")
	drainSize     = flag.Int("drain.size", 10*1024, "message size in bytes")
	drainSessions = flag.Int("drain.sessions", 10, "concurrent SMTP sessions used to fill each queue (not timed)")
	drainDKIM     = flag.Bool("drain.dkim", true, "Postern signs the drained mail with DKIM (its default for mail from local senders); "+
		"false fills its queue through forwarding aliases on the MX instead, which are not signed, like Postfix's relaying here")
	drainResign = flag.Bool("drain.resign", true, "with -drain.dkim, drop the DKIM signatures Postern kept from the failed attempts made while "+
		"filling its queue, so that the timed drain signs every message as a first attempt does; false: the drain reuses them, "+
		"as if signed at queue time (where Postfix with a DKIM milter signs)")
	drainProfile = flag.String("drain.cpuprofile", "", "write a CPU profile of the Postern process while it drains the queue to this file, "+
		"relative to bench/ (-cpuprofile profiles only the test process)")
)

// sinkIP is where smtp-sink listens: every destination domain's MX for
// Postern, the transport next hop for Postfix.
const sinkIP = "127.0.0.5"

// BenchmarkQueueDrain fills Postern's outbound queue with -drain.n messages
// of -drain.size bytes, one recipient each, spread over -drain.domains
// domains whose MX (through an in-process DNS server) is Postfix's
// smtp-sink, then measures how fast the queue drains into the sink. In the
// same run Postfix gets the same load (on hold, then released and flushed)
// and relays it to the same sink. It reports both rates and their ratio.
//
// Postern DKIM-signs (rsa-sha256 and ed25519-sha256) mail from its own users
// once, at the first attempt, which here happens (and fails) while the
// queue is filled; -drain.resign (the default) drops the kept signatures so
// that the timed drain pays for the signing. Postfix here signs nothing. -drain.dkim=false queues the
// same load as mail from an outside sender to forwarding aliases on the MX
// (user N's alias forwards to a destination domain), which Postern does not
// sign, to compare the queue and courier alone.
// The whole run happens once, whatever b.N is:
//
//	go test -run '^$' -bench QueueDrain -benchtime 1x -drain.n 10000 ./bench/
func BenchmarkQueueDrain(b *testing.B) {
	if why := postfixtest.Missing(); why != "" {
		b.Skip(why)
	}
	sinkBin, err := postfixtest.Tool("smtp-sink")
	if err != nil {
		b.Skip(err)
	}
	n, domains := *drainN, *drainDomains
	if n < 1 || domains < 1 {
		b.Fatal("-drain.n and -drain.domains must be positive")
	}
	from := "sender@bench.test"
	if !*drainDKIM {
		from = "sender@elsewhere.test"
	}
	msg := drainMessage(from, *drainSize)
	rcpt := func(i int) string { return fmt.Sprintf("user%d@d%02d.test", i, i%domains) }
	// Without DKIM, message i goes to alias i%domains, which forwards to the
	// same domain as rcpt(i) would be in.
	fwd := func(i int) string { return fmt.Sprintf("fwd%02d@bench.test", i%domains) }
	sinkPort := freePortOn(b, sinkIP)
	sinkAddr := net.JoinHostPort(sinkIP, strconv.Itoa(sinkPort))

	b.StopTimer()
	for i := 0; i < b.N; i++ {
		// Postern: queue everything while the sink is down, stop, make
		// every entry due, start the sink, start Postern and time it.
		pn := newDrainPostern(b, domains, sinkPort)
		if *drainDKIM {
			pn.start(b, "")
			fill(b, pn.submission, from, pn.password, msg, n, rcpt)
		} else {
			for d := 0; d < domains; d++ {
				pn.cli(b, "", "alias", "add", fwd(d), fmt.Sprintf("user%d@d%02d.test", d, d))
			}
			pn.start(b, "")
			fill(b, pn.smtp, from, "", msg, n, fwd)
		}
		pn.waitMetric(b, `postern_queue_deliveries_total{result="deferred"}`, float64(n), 5*time.Minute)
		pn.stop(b)
		if *drainDKIM && *drainResign {
			pn.forgetSignatures(b)
		}
		pn.cli(b, "", "queue", "retry", "--all")
		sink := startSink(b, sinkBin, sinkAddr)
		sess0 := sink.sessions()
		t0 := time.Now()
		pn.start(b, *drainProfile)
		sink.waitCount(b, n, 10*time.Minute)
		posternTime := time.Since(t0)
		pn.waitMetric(b, "postern_queue_entries", 0, time.Minute)
		pn.stop(b)
		time.Sleep(200 * time.Millisecond)
		if got := sink.count(); got != n {
			b.Fatalf("the sink got %d messages from Postern, want %d (none twice)", got, n)
		}
		posternSessions := sink.sessions() - sess0

		// Postfix: the same messages held on arrival, then released and
		// flushed to the same sink.
		pfPort := freePortOn(b, "127.0.0.1")
		pf := postfixtest.Start(b, postfixtest.Options{
			Hostname:  "mx.postfix.bench.test",
			Listen:    []string{fmt.Sprintf("127.0.0.1:%d", pfPort)},
			Transport: map[string]string{"*": "smtp:[" + sinkIP + "]:" + strconv.Itoa(sinkPort)},
			Main:      []string{"smtpd_client_restrictions = check_client_access static:HOLD"},
		})
		fill(b, fmt.Sprintf("127.0.0.1:%d", pfPort), from, "", msg, n, rcpt)
		hold := filepath.Join(pf.Dir, "queue", "hold")
		deadline := time.Now().Add(5 * time.Minute)
		for countFiles(hold) < n {
			if time.Now().After(deadline) {
				b.Fatalf("Postfix holds %d of %d messages", countFiles(hold), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		base, sess0 := sink.count(), sink.sessions()
		t0 = time.Now()
		for _, args := range [][]string{{"postsuper", "-c", pf.Etc, "-H", "ALL"}, {"postqueue", "-c", pf.Etc, "-f"}} {
			p, _ := postfixtest.Tool(args[0])
			if out, err := exec.Command(p, args[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
		sink.waitCount(b, base+n, 10*time.Minute)
		postfixTime := time.Since(t0)
		postfixSessions := sink.sessions() - sess0
		pf.Stop()
		if got := sink.count() - base; got != n {
			b.Fatalf("the sink got %d messages from Postfix, want %d", got, n)
		}

		pr, fr := float64(n)/posternTime.Seconds(), float64(n)/postfixTime.Seconds()
		b.ReportMetric(pr, "postern-msgs/s")
		b.ReportMetric(fr, "postfix-msgs/s")
		b.ReportMetric(pr/fr, "ratio")
		b.Logf("%d messages of %d bytes to %d domains (Postern signing with DKIM: %v): Postern %.0f msg/s (%v, %d SMTP sessions closed), Postfix %.0f msg/s (%v, %d SMTP sessions closed), ratio %.2f",
			n, len(msg), domains, *drainDKIM, pr, posternTime.Round(time.Millisecond), posternSessions, fr, postfixTime.Round(time.Millisecond), postfixSessions, pr/fr)
	}
}

func drainMessage(from string, size int) []byte {
	var m bytes.Buffer
	m.WriteString("From: " + from + "\r\nSubject: queue drain\r\nMessage-ID: <drain@bench.test>\r\n\r\n")
	for m.Len() < size {
		m.WriteString("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n")
	}
	return m.Bytes()
}

// freePortOn returns a TCP port free on ip a moment ago.
func freePortOn(b *testing.B, ip string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fill sends n messages over sessions concurrent SMTP sessions to addr,
// message i to rcpt(i). With a password it uses STARTTLS and AUTH PLAIN
// (Postern's submission); without, plain SMTP (Postfix trusts 127/8).
func fill(b *testing.B, addr, from, password string, msg []byte, n int, rcpt func(int) string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *drainSessions)
	for s := 0; s < *drainSessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				c, err := smtp.Dial(addr)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := c.Hello("load.bench.test"); err != nil {
					return err
				}
				if password != "" {
					if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
						return err
					}
					host, _, _ := net.SplitHostPort(addr)
					if err := c.Auth(smtp.PlainAuth("", from, password, host)); err != nil {
						return err
					}
				}
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return c.Quit()
					}
					if err := c.Mail(from); err != nil {
						return fmt.Errorf("message %d: MAIL: %v", i, err)
					}
					if err := c.Rcpt(rcpt(i)); err != nil {
						return fmt.Errorf("message %d: RCPT: %v", i, err)
					}
					w, err := c.Data()
					if err != nil {
						return fmt.Errorf("message %d: DATA: %v", i, err)
					}
					if _, err := w.Write(msg); err != nil {
						return err
					}
					if err := w.Close(); err != nil {
						return fmt.Errorf("message %d: end of data: %v", i, err)
					}
				}
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatalf("filling the queue at %s: %v", addr, err)
		}
	}
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// drainPostern is a postern process for the drain benchmark: submission
// for filling the queue, MX of the destination domains at the sink.
type drainPostern struct {
	bin, dir, config string
	smtp, submission string
	admin            string
	password         string
	cmd              *exec.Cmd
	exited           chan struct{}
}

func newDrainPostern(b *testing.B, domains, mxPort int) *drainPostern {
	// The SOA gives negative answers (no AAAA for the MX hosts) a TTL, as
	// real zones do, so that the resolver may cache them.
	zone := []string{"test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"}
	for d := 0; d < domains; d++ {
		zone = append(zone, fmt.Sprintf("d%02d.test. 60 IN MX 10 mx.d%02d.test.", d, d), fmt.Sprintf("mx.d%02d.test. 60 IN A %s", d, sinkIP))
	}
	dns := dnstest.StartServer(b, dnstest.Zone(b, zone...))
	p := &drainPostern{bin: postern(b), dir: b.TempDir(), smtp: freePort(b), submission: freePort(b), admin: freePort(b), password: "drain-secret"}
	p.config = filepath.Join(p.dir, "postern.toml")
	cfg := fmt.Sprintf(`hostname = "mx.bench.test"
data_dir = "data"
[listen]
smtp = [%q]
submission = [%q]
admin = [%q]
submissions = []
imap = []
imaps = []
pop3 = []
pop3s = []
[dns]
resolver = %q
[delivery]
mx_port = %d
[queue]
retry = ["1h"]
[limits]
max_connections_per_ip = 100
auth_fail_delay = "0s"
`, p.smtp, p.submission, p.admin, dns.Addr, mxPort)
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	p.cli(b, "", "domain", "add", "bench.test")
	p.cli(b, p.password+"\n", "user", "add", "sender@bench.test", "--password-stdin")
	b.Cleanup(func() {
		if p.cmd != nil {
			p.stop(b)
		}
	})
	return p
}

func (p *drainPostern) cli(b *testing.B, stdin string, args ...string) string {
	cmd := exec.Command(p.bin, append(args, "--config", p.config)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("postern %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// start runs postern serve and waits until it is ready; with a profile path,
// it writes a CPU profile of its run there when stopped.
func (p *drainPostern) start(b *testing.B, profile string) {
	args := []string{"serve", "--config", p.config, "--log-level", "warn"}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	p.cmd = exec.Command(p.bin, args...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p.exited = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			if !seen && sc.Text() == "postern ready" {
				seen = true
				close(ready)
			}
		}
	}()
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-ready:
	case <-p.exited:
		b.Fatal("postern exited before it was ready")
	case <-time.After(30 * time.Second):
		b.Fatal("postern not ready within 30s")
	}
}

func (p *drainPostern) stop(b *testing.B) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// forgetSignatures drops the DKIM signatures kept for queued messages (the
// server must be stopped).
func (p *drainPostern) forgetSignatures(b *testing.B) {
	db, err := sql.Open("sqlite", filepath.Join(p.dir, "data", "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(`DELETE FROM queue_signatures`)
	if err != nil {
		b.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		b.Fatal("no DKIM signatures were kept by the failed attempts")
	}
}

// metric reads one sample of the server's /metrics (0 when absent).
func (p *drainPostern) metric(b *testing.B, name string) float64 {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// waitMetric waits until a metric reaches want (counters) or, for want 0,
// falls to 0 (gauges).
func (p *drainPostern) waitMetric(b *testing.B, name string, want float64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		v := p.metric(b, name)
		if (want == 0 && v == 0) || (want > 0 && v >= want) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s = %v after %v, want %v", name, v, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink is a running smtp-sink that counts the messages it accepted
// (its -c counter).
type sink struct {
	mu         sync.Mutex
	sess, mesg int
	cmd        *exec.Cmd
}

var sinkCountRe = regexp.MustCompile(`sess=(\d+) .*mesg=(\d+)`)

func startSink(b *testing.B, bin, addr string) *sink {
	s := &sink{cmd: exec.Command(bin, "-c", "-u", "postfix", addr, "1024")}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	go func() {
		br := bufio.NewReader(out)
		for {
			rec, err := br.ReadString('\r')
			if m := sinkCountRe.FindStringSubmatch(rec); m != nil {
				sess, _ := strconv.Atoi(m[1])
				mesg, _ := strconv.Atoi(m[2])
				s.mu.Lock()
				s.sess, s.mesg = sess, mesg
				s.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	if err := postfixtest.WaitGreeting(addr, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	return s
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mesg
}

// sessions returns how many SMTP sessions the sink has had.
func (s *sink) sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess
}

func (s *sink) waitCount(b *testing.B, want int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for s.count() < want {
		if time.Now().After(deadline) {
			b.Fatalf("the sink got %d messages within %v, want %d", s.count(), timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
