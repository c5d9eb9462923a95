package bench

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The POP3 download benchmark: one user's INBOX of pop3Messages messages
// of pop3MsgSize octets, downloaded in one session over implicit TLS (login,
// UIDL, RETR of every message one after the other, as fetchmail does, QUIT
// without DELE so that the maildrop stays) from Postern and from Dovecot's
// POP3 in its high-performance mode, alternately, in the same run.
const (
	pop3Messages = 2000
	pop3MsgSize  = 20 << 10
	pop3User     = "bench@bench.test"
	pop3Pass     = "bench-secret"
)

// message20KiB is a message of about pop3MsgSize octets with CRLF line ends.
func message20KiB(i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: load@example.org\r\nTo: %s\r\nSubject: message %d\r\nMessage-ID: <%d@bench.example.org>\r\n\r\n", pop3User, i, i)
	for b.Len() < pop3MsgSize-90 {
		b.WriteString("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n")
	}
	b.WriteString(".A line that must be dot-stuffed\r\n")
	return b.Bytes()
}

// startPosternPOP3 runs postern with a POP3S listener and fills the user's
// INBOX over SMTP; it returns the POP3S address.
func startPosternPOP3(b *testing.B) string {
	bin := postern(b)
	dir := b.TempDir()
	smtpAddr, pop3sAddr, admin := freePort(b), freePort(b), freePort(b)
	cfg := fmt.Sprintf(`hostname = "mx.bench.test"
data_dir = "data"
[listen]
smtp = [%q]
pop3s = [%q]
admin = [%q]
submission = []
submissions = []
imap = []
imaps = []
pop3 = []
[limits]
max_connections_per_ip = 100
`, smtpAddr, pop3sAddr, admin)
	cfgPath := filepath.Join(dir, "postern.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		stdin string
	}{{[]string{"domain", "add", "bench.test"}, ""}, {[]string{"user", "add", pop3User, "--password-stdin"}, pop3Pass + "\n"}} {
		cmd := exec.Command(bin, append(c.args, "--config", cfgPath)...)
		cmd.Stdin = strings.NewReader(c.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", c.args, err, out)
		}
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
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
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})

	const sessions = 10
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := dial(smtpAddr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer cl.c.Close()
			for i := next.Add(1); i <= pop3Messages; i = next.Add(1) {
				if err := cl.send("load@example.org", pop3User, append(dotStuff(message20KiB(int(i))), '\r', '\n')); err != nil {
					b.Logf("smtp: %v", err)
					failed.Add(1)
					return
				}
			}
			cl.cmd("QUIT", 221)
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatal("filling the Postern INBOX over SMTP failed")
	}
	return pop3sAddr
}

// dotStuff doubles leading dots for SMTP DATA (the benchmark's SMTP
// client sends the message as is).
func dotStuff(msg []byte) []byte {
	lines := bytes.SplitAfter(msg, []byte("\r\n"))
	var out bytes.Buffer
	for _, l := range lines {
		if len(l) > 0 && l[0] == '.' {
			out.WriteByte('.')
		}
		out.Write(l)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\r\n"))
}

// startDovecotPOP3 runs Dovecot's POP3 (high-performance mode: login and
// pop3 processes reused, some started in advance) on implicit TLS with a
// Maildir holding the same messages, and returns its address. It skips
// the benchmark when dovecot is not installed.
func startDovecotPOP3(b *testing.B) string {
	dovecot, err := exec.LookPath("dovecot")
	if err != nil {
		for _, p := range []string{"/usr/sbin/dovecot", "/sbin/dovecot"} {
			if _, err := os.Stat(p); err == nil {
				dovecot = p
			}
		}
		if dovecot == "" {
			b.Skip("dovecot is not installed: apt-get install -y dovecot-pop3d")
		}
	}
	if os.Getuid() != 0 {
		b.Skip("running Dovecot needs root")
	}
	dir, err := os.MkdirTemp("/tmp", "postern-bench-dovecot-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	certPEM, keyPEM := selfSignedPEM(b)
	maildir := filepath.Join(dir, "mail", "bench")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Now().Unix()
	for i := 1; i <= pop3Messages; i++ {
		// Maildir holds LF line ends; Dovecot sends CRLF.
		msg := bytes.ReplaceAll(message20KiB(i), []byte("\r\n"), []byte("\n"))
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d", base, i, len(msg))
		if err := os.WriteFile(filepath.Join(maildir, "new", name), msg, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	port := strings.TrimPrefix(freePort(b), "127.0.0.1:")
	files := map[string]string{
		"cert.pem": certPEM, "key.pem": keyPEM,
		"passwd": pop3User + ":{PLAIN}" + pop3Pass + "::::\n",
		"dovecot.conf": fmt.Sprintf(`instance_name = postern-bench
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:%[1]s/mail/%%n
first_valid_uid = 1
pop3_uidl_format = %%08Xu%%08Xv
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
  default_fields = uid=65534 gid=65534 home=%[1]s/mail/%%n
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = %[2]s
    ssl = yes
  }
  service_count = 0
  process_min_avail = 2
}
service pop3 {
  service_count = 0
  process_min_avail = 2
}
`, dir, port),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "-R", "65534:65534", filepath.Join(dir, "mail")).CombinedOutput(); err != nil {
		b.Fatalf("chown: %v %s", err, out)
	}
	cmd := exec.Command(dovecot, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := "127.0.0.1:" + port
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			b.Fatalf("dovecot did not listen on %s: %s\n%s", addr, out.String(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr
}

func selfSignedPEM(b *testing.B) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// pop3Download runs one download session and returns the number of
// messages and octets received.
func pop3Download(addr string) (int, int64, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	br := bufio.NewReaderSize(conn, 64<<10)
	status := func(cmd string) (string, error) {
		if cmd != "" {
			if _, err := io.WriteString(conn, cmd+"\r\n"); err != nil {
				return "", err
			}
		}
		l, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, "+OK") {
			return "", fmt.Errorf("%q: %q", strings.Fields(cmd + " x")[0], l)
		}
		return l, nil
	}
	multi := func() (int64, int, error) {
		var n int64
		lines := 0
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return n, lines, err
			}
			if len(l) == 3 && l[0] == '.' {
				return n, lines, nil
			}
			n += int64(len(l))
			lines++
		}
	}
	for _, c := range []string{"", "USER " + pop3User, "PASS " + pop3Pass} {
		if _, err := status(c); err != nil {
			return 0, 0, err
		}
	}
	if _, err := status("UIDL"); err != nil {
		return 0, 0, err
	}
	_, count, err := multi()
	if err != nil {
		return 0, 0, err
	}
	var total int64
	for i := 1; i <= count; i++ {
		if _, err := status("RETR " + strconv.Itoa(i)); err != nil {
			return i - 1, total, err
		}
		n, _, err := multi()
		if err != nil {
			return i - 1, total, err
		}
		total += n
	}
	_, err = status("QUIT")
	return count, total, err
}

// BenchmarkPOP3Download2000x20KiB downloads the whole maildrop from
// Postern and from Dovecot alternately, b.N times each, and reports both
// times per download and their ratio (dovecot-s / postern-s: above 1 means
// Postern is faster). Run it with -benchtime 3x; see bench/run.
func BenchmarkPOP3Download2000x20KiB(b *testing.B) {
	peer := startPosternPOP3(b)
	dove := startDovecotPOP3(b)
	var tPostern, tDovecot time.Duration
	var octets int64
	// One untimed session each: Dovecot builds its index and uidlist on
	// the first, Postern warms its page cache.
	for _, a := range []string{peer, dove} {
		if n, _, err := pop3Download(a); err != nil || n != pop3Messages {
			b.Fatalf("warm-up download from %s: %d messages, %v", a, n, err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, side := range []struct {
			addr string
			t    *time.Duration
		}{{peer, &tPostern}, {dove, &tDovecot}} {
			start := time.Now()
			n, size, err := pop3Download(side.addr)
			*side.t += time.Since(start)
			if err != nil || n != pop3Messages {
				b.Fatalf("download from %s: %d messages, %v", side.addr, n, err)
			}
			if side.addr == peer {
				octets += size
			}
		}
	}
	b.StopTimer()
	ps, ds := tPostern.Seconds()/float64(b.N), tDovecot.Seconds()/float64(b.N)
	b.ReportMetric(ps, "postern-s/download")
	b.ReportMetric(ds, "dovecot-s/download")
	b.ReportMetric(pop3Messages/ps, "postern-msgs/s")
	b.ReportMetric(pop3Messages/ds, "dovecot-msgs/s")
	b.ReportMetric(ds/ps, "ratio")
	b.ReportMetric(float64(octets)/float64(b.N)/ps/(1<<20), "postern-MiB/s")
}
