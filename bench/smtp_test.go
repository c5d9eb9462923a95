// Package bench holds end-to-end benchmarks that run the built postern
// binary as a separate process on loopback and load it like real clients.
//
//	go test -run '^$' -bench SMTP -benchtime 20000x ./bench/
//
// Side-by-side runs against Postfix, Dovecot and maddy live in bench/run.
package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func postern(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "postern-bench")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "postern")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/postern").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binPath
}

func freePort(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type server struct {
	cmd   *exec.Cmd
	smtp  string
	admin string
}

func startPostern(b *testing.B) *server {
	bin := postern(b)
	dir := b.TempDir()
	s := &server{smtp: freePort(b), admin: freePort(b)}
	cfg := fmt.Sprintf(`hostname = "mx.bench.test"
data_dir = "data"
[listen]
smtp = [%q]
admin = [%q]
submission = []
submissions = []
imap = []
imaps = []
pop3 = []
pop3s = []
[limits]
max_connections_per_ip = 100
`, s.smtp, s.admin)
	cfgPath := filepath.Join(dir, "postern.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, args := range [][]string{{"domain", "add", "bench.test"}, {"user", "add", "bench@bench.test"}} {
		if out, err := exec.Command(bin, append(args, "--config", cfgPath)...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	args := []string{"serve", "--config", cfgPath, "--log-level", "warn"}
	if p := os.Getenv("POSTERN_BENCH_CPUPROFILE"); p != "" {
		args = append(args, "--cpuprofile", p) // a pprof CPU profile of the server, written when it stops
	}
	s.cmd = exec.Command(bin, args...)
	stdout, _ := s.cmd.StdoutPipe()
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "postern ready" {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	b.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
	})
	return s
}

var metricRe = regexp.MustCompile(`(?m)^(postern_store_fsyncs_total|postern_store_commits_total|postern_smtp_messages_accepted_total) (\S+)$`)

func (s *server) metrics(b *testing.B) map[string]float64 {
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	m := map[string]float64{}
	for _, g := range metricRe.FindAllStringSubmatch(buf.String(), -1) {
		v, _ := strconv.ParseFloat(g[2], 64)
		m[g[1]] = v
	}
	return m
}

// smtpClient is a minimal pipelining-free SMTP client that keeps one
// connection for many messages, like smtp-source -d.
type smtpClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dial(addr string) (*smtpClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cl := &smtpClient{c: c, br: bufio.NewReader(c)}
	if _, err := cl.reply(); err != nil {
		return nil, err
	}
	if err := cl.cmd("EHLO load.bench.test", 250); err != nil {
		return nil, err
	}
	return cl, nil
}

func (cl *smtpClient) reply() (int, error) {
	for {
		line, err := cl.br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if len(line) < 4 {
			return 0, fmt.Errorf("short reply %q", line)
		}
		if line[3] == ' ' {
			return strconv.Atoi(line[:3])
		}
	}
}

func (cl *smtpClient) cmd(c string, want int) error {
	if _, err := cl.c.Write([]byte(c + "\r\n")); err != nil {
		return err
	}
	code, err := cl.reply()
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("%s: got %d, want %d", c, code, want)
	}
	return nil
}

func (cl *smtpClient) send(from, to string, msg []byte) error {
	if err := cl.cmd("MAIL FROM:<"+from+">", 250); err != nil {
		return err
	}
	if err := cl.cmd("RCPT TO:<"+to+">", 250); err != nil {
		return err
	}
	if err := cl.cmd("DATA", 354); err != nil {
		return err
	}
	if _, err := cl.c.Write(msg); err != nil {
		return err
	}
	return cl.cmd(".", 250)
}

func message10KiB() []byte {
	var b bytes.Buffer
	b.WriteString("From: load@example.org\r\nTo: bench@bench.test\r\nSubject: benchmark\r\nMessage-ID: <bench@example.org>\r\n\r\n")
	for b.Len() < 10*1024 {
		b.WriteString("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n")
	}
	return b.Bytes()
}

// BenchmarkSMTPAccept10KiB20 sends b.N messages of 10 KiB over 20
// concurrent SMTP sessions to a postern process and reports accepted
// messages per second, p50/p99 transaction latency (MAIL to 250) and
// fsyncs per message read from the server's /metrics.
func BenchmarkSMTPAccept10KiB20(b *testing.B) {
	const sessions = 20
	s := startPostern(b)
	before := s.metrics(b)
	b.SetBytes(int64(len(message10KiB())))
	b.ResetTimer()
	r := runLoad(b, s.smtp, "bench@bench.test", b.N, sessions)
	b.StopTimer()
	after := s.metrics(b)
	accepted := after["postern_smtp_messages_accepted_total"] - before["postern_smtp_messages_accepted_total"]
	if int(accepted) != b.N {
		b.Fatalf("server accepted %v messages, sent %d", accepted, b.N)
	}
	b.ReportMetric(float64(b.N)/r.elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric((after["postern_store_fsyncs_total"]-before["postern_store_fsyncs_total"])/accepted, "fsyncs/msg")
	b.ReportMetric(accepted/(after["postern_store_commits_total"]-before["postern_store_commits_total"]), "msgs/commit")
}

// loadResult is one run of the SMTP load.
type loadResult struct {
	elapsed  time.Duration
	p50, p99 time.Duration
}

// runLoad sends n 10 KiB messages over the given number of sessions (one
// connection each, reused) and measures MAIL-to-250 latencies.
func runLoad(b *testing.B, addr, rcpt string, n, sessions int) loadResult {
	if smtpSourceLoad {
		return runSmtpSource(b, addr, rcpt, n, sessions)
	}
	msg := message10KiB()
	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, sessions)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl, err := dial(addr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer cl.c.Close()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if err := cl.send("load@example.org", rcpt, msg); err != nil {
					failed.Add(1)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
			cl.cmd("QUIT", 221)
		}(i)
	}
	wg.Wait()
	r := loadResult{elapsed: time.Since(start)}
	if failed.Load() > 0 {
		b.Fatalf("%d sessions failed against %s", failed.Load(), addr)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	return r
}

// smtpSourceLoad makes runLoad drive the load with Postfix's smtp-source
// instead of the Go client (BenchmarkSMTPInboundSmtpSource).
var smtpSourceLoad bool

// smtpSourcePath finds Postfix's smtp-source.
func smtpSourcePath() (string, error) {
	if p, err := exec.LookPath("smtp-source"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/smtp-source"); err != nil {
		return "", err
	}
	return "/usr/sbin/smtp-source", nil
}

// runSmtpSource sends n messages of 10 KiB over sessions connections with
// smtp-source and returns how long it took.
func runSmtpSource(b *testing.B, addr, rcpt string, n, sessions int) loadResult {
	path, err := smtpSourcePath()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command(path, "-d", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n), "-l", "10240",
		"-M", "load.bench.test", "-f", "load@example.org", "-t", rcpt, addr).CombinedOutput()
	if err != nil {
		b.Fatalf("smtp-source against %s: %v\n%s", addr, err, out)
	}
	return loadResult{elapsed: time.Since(start)}
}
