package bench

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
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

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The IMAP benchmark: imapClients sessions loop over a mixed profile like
// Dovecot's imaptest (LOGIN, SELECT, FETCH of all flags, FETCH of one body,
// STORE, APPEND, EXPUNGE of what was appended, LOGOUT) for imapSeconds
// against Postern, then Dovecot's IMAP in its high-performance mode, then
// maddy v0.8.1 (built by bench/maddy/build.sh), in the same run, over
// implicit TLS. Each mailbox starts with imapMessages messages of about
// 10 KiB, appended over IMAP.
//
//	go test -run '^$' -bench IMAPMixed -benchtime 1x ./bench/ -maddy.bin "$(bench/maddy/build.sh)"
//
// POSTERN_BENCH_IMAP_SECONDS changes the duration (default 60).
const (
	imapClients  = 20
	imapMessages = 500
	imapUser     = "imap@bench.test"
	imapPass     = "bench-secret"
)

func imapSeconds() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("POSTERN_BENCH_IMAP_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 60 * time.Second
}

// imapServer is a server under load: its IMAPS address and, for Postern,
// its process (for RSS), SMTP listener and data directory; for Dovecot,
// the user's Maildir.
type imapServer struct {
	addr  string
	pid   int
	admin string // Postern's /metrics
	smtp  string // Postern's SMTP listener
	dir   string // Postern's data directory, or the user's Maildir for Dovecot
}

// startPosternIMAP starts Postern with imapMessages messages in INBOX.
func startPosternIMAP(b *testing.B, env ...string) imapServer {
	srv := startPosternEmpty(b, env...)
	imapFill(b, srv.addr)
	return srv
}

// startPosternEmpty starts Postern with user imapUser and an empty INBOX.
func startPosternEmpty(b *testing.B, env ...string) imapServer {
	bin := postern(b)
	dir := b.TempDir()
	smtpAddr, imapsAddr, admin := freePort(b), freePort(b), freePort(b)
	cfg := fmt.Sprintf(`hostname = "mx.bench.test"
data_dir = "data"
[listen]
smtp = [%q]
imaps = [%q]
admin = [%q]
submission = []
submissions = []
imap = []
pop3 = []
pop3s = []
[limits]
max_connections = 5000
max_connections_per_ip = 2000
`, smtpAddr, imapsAddr, admin)
	cfgPath := filepath.Join(dir, "postern.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		stdin string
	}{{[]string{"domain", "add", "bench.test"}, ""}, {[]string{"user", "add", imapUser, "--password-stdin"}, imapPass + "\n"}} {
		cmd := exec.Command(bin, append(c.args, "--config", cfgPath)...)
		cmd.Stdin = strings.NewReader(c.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", c.args, err, out)
		}
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "warn")
	cmd.Env = append(os.Environ(), env...)
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
	return imapServer{addr: imapsAddr, pid: cmd.Process.Pid, admin: admin, smtp: smtpAddr, dir: filepath.Join(dir, "data")}
}

// startDovecotIMAP starts Dovecot with imapMessages messages in INBOX; it
// reports false if Dovecot's IMAP cannot run here.
func startDovecotIMAP(b *testing.B) (imapServer, bool) {
	srv, ok := startDovecotEmpty(b)
	if ok {
		imapFill(b, srv.addr)
	}
	return srv, ok
}

// startDovecotEmpty starts Dovecot with user imapUser, whose Maildir is
// srv.dir (owned by uid 65534).
func startDovecotEmpty(b *testing.B) (imapServer, bool) {
	dovecot, err := exec.LookPath("dovecot")
	if err != nil {
		dovecot = "/usr/sbin/dovecot"
	}
	if _, err := os.Stat(dovecot); err != nil {
		return imapServer{}, false
	}
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil || os.Getuid() != 0 {
		return imapServer{}, false // needs dovecot-imapd and root
	}
	dir, err := os.MkdirTemp("/tmp", "postern-bench-dovecot-imap-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o755); err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM := selfSignedPEM(b)
	port := strings.TrimPrefix(freePort(b), "127.0.0.1:")
	files := map[string]string{
		"cert.pem": certPEM, "key.pem": keyPEM,
		"passwd": imapUser + ":{PLAIN}" + imapPass + "::::\n",
		"dovecot.conf": fmt.Sprintf(`instance_name = postern-bench-imap
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:%[1]s/mail/%%n
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
  default_fields = uid=65534 gid=65534 home=%[1]s/mail/%%n
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = %[2]s
    ssl = yes
  }
  service_count = 0
  process_min_avail = 2
}
protocol imap {
  mail_max_userip_connections = 2000
}
service imap {
  service_count = 0
  process_min_avail = 2
  process_limit = 1024
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
	local, _, _ := strings.Cut(imapUser, "@") // %n in mail_location
	return imapServer{addr: addr, dir: filepath.Join(dir, "mail", local)}, true
}

func imapDial(addr string) (*imapclient.Client, error) {
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		return nil, err
	}
	if err := c.Login(imapUser, imapPass).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// imapMessage returns message i, of about 10 KiB, and its Message-ID
// (unique).
func imapMessage(i int) (msg []byte, msgID string) {
	var m bytes.Buffer
	msgID = fmt.Sprintf("<%d.%d@bench.example.org>", i, rand.Int64())
	fmt.Fprintf(&m, "From: load@example.org\r\nTo: %s\r\nSubject: message %d\r\nMessage-ID: %s\r\n\r\n", imapUser, i, msgID)
	for m.Len() < 10<<10 {
		m.WriteString("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n")
	}
	return m.Bytes(), msgID
}

// imapAppend appends message i to INBOX and returns its UID from
// APPENDUID (0 when the server has no UIDPLUS) and its Message-ID.
func imapAppend(c *imapclient.Client, i int) (imap.UID, string, error) {
	msg, msgID := imapMessage(i)
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write(msg); err != nil {
		return 0, "", err
	}
	if err := cmd.Close(); err != nil {
		return 0, "", err
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, "", err
	}
	return data.UID, msgID, nil
}

// imapExpungeNoUIDPlus removes the message with msgID that this session
// has just appended to the selected INBOX, on a server without UIDPLUS
// (RFC 4315: no APPENDUID, no UID EXPUNGE; maddy v0.8.1). It fetches the
// Message-ID of the messages with a UID of at least uidNext (from SELECT:
// this session's message and those other sessions appended since, not the
// whole mailbox), marks the one that matches \Deleted and EXPUNGEs. A plain
// EXPUNGE also removes what other sessions have marked \Deleted but not
// yet expunged; their own EXPUNGE then finds nothing left, which the
// profile does not count differently.
func imapExpungeNoUIDPlus(c *imapclient.Client, uidNext imap.UID, msgID string) error {
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	uidNext = max(uidNext, 1) // 0 if SELECT did not say UIDNEXT
	for try := 0; ; try++ {
		msgs, err := c.Fetch(imap.UIDSet{{Start: uidNext, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{header}}).Collect()
		if err != nil {
			return fmt.Errorf("uid fetch message-id: %w", err)
		}
		for _, m := range msgs {
			for _, sec := range m.BodySection {
				if !bytes.Contains(sec.Bytes, []byte(msgID)) {
					continue
				}
				if _, err := c.Store(imap.UIDSetNum(m.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
					return fmt.Errorf("store deleted: %w", err)
				}
				if _, err := c.Expunge().Collect(); err != nil {
					return fmt.Errorf("expunge: %w", err)
				}
				return nil
			}
		}
		if try == 1 {
			return fmt.Errorf("appended message %s not found from UID %d", msgID, uidNext)
		}
		// The session may not have been told of its APPEND yet.
		if err := c.Noop().Wait(); err != nil {
			return fmt.Errorf("noop: %w", err)
		}
	}
}

// imapFill appends imapMessages messages to the user's INBOX.
func imapFill(b *testing.B, addr string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := imapDial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := next.Add(1); i <= imapMessages; i = next.Add(1) {
				if _, _, err := imapAppend(c, int(i)); err != nil {
					errs <- err
					return
				}
			}
			c.Logout().Wait()
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("filling %s: %v", addr, err)
	default:
	}
}

var imapOps = []string{"login", "select", "fetch-flags", "fetch-body", "store", "append", "expunge", "logout"}

// imapLoad runs the mixed profile and returns completed operations per
// command.
func imapLoad(addr string, d time.Duration) (map[string]int64, error) {
	counts, _, err := imapLoadTimed(addr, d)
	return counts, err
}

// imapLoadTimed is imapLoad that also returns each command's mean latency.
func imapLoadTimed(addr string, d time.Duration) (map[string]int64, map[string]time.Duration, error) {
	counts := make([]atomic.Int64, len(imapOps))
	nanos := make([]atomic.Int64, len(imapOps))
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for cl := range imapClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(cl), 1))
			for time.Now().Before(deadline) {
				if err := imapSession(addr, rnd, counts, nanos); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	out, mean := map[string]int64{}, map[string]time.Duration{}
	for i, op := range imapOps {
		out[op] = counts[i].Load()
		if out[op] > 0 {
			mean[op] = time.Duration(nanos[i].Load() / out[op])
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return out, mean, err
	}
	return out, mean, nil
}

func imapSession(addr string, rnd *rand.Rand, counts, nanos []atomic.Int64) error {
	t := time.Now()
	done := func(op int) {
		counts[op].Add(1)
		nanos[op].Add(int64(time.Since(t)))
		t = time.Now()
	}
	c, err := imapDial(addr)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	defer c.Close()
	done(0)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return fmt.Errorf("select: %w", err)
	}
	done(1)
	n := sel.NumMessages
	for range 5 {
		if _, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, UID: true}).Collect(); err != nil {
			return fmt.Errorf("fetch flags: %w", err)
		}
		done(2)
		seq := uint32(rnd.IntN(int(n))) + 1
		if _, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect(); err != nil {
			return fmt.Errorf("fetch body: %w", err)
		}
		done(3)
		op := imap.StoreFlagsAdd
		if rnd.IntN(2) == 0 {
			op = imap.StoreFlagsDel
		}
		if _, err := c.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Collect(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		done(4)
	}
	uid, msgID, err := imapAppend(c, rnd.Int())
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	done(5)
	if uid == 0 { // no UIDPLUS
		err = imapExpungeNoUIDPlus(c, sel.UIDNext, msgID)
	} else {
		err = imapExpungeUID(c, uid)
	}
	if err != nil {
		return err
	}
	done(6)
	if err := c.Logout().Wait(); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	done(7)
	return nil
}

// imapExpungeUID removes the message with uid: STORE \Deleted, then UID
// EXPUNGE (RFC 4315), leaving what other sessions marked alone.
func imapExpungeUID(c *imapclient.Client, uid imap.UID) error {
	if _, err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		return fmt.Errorf("store deleted: %w", err)
	}
	if _, err := c.UIDExpunge(imap.UIDSetNum(uid)).Collect(); err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	return nil
}

// BenchmarkIMAPMixed20 reports operations per second per command and
// their mean latency (from the client's side, under the whole load; login
// includes the TLS handshake, expunge the STORE \Deleted before it) for
// Postern and, when they can run here, for Dovecot and maddy, with the
// ratio of all operations per second (ratio: vs Dovecot; ratio-vs-maddy).
// Every session runs the same sequence, so the rates per command are in
// fixed proportion; the latencies show where each server spends its time.
// maddy has no UIDPLUS, so its expunge step also looks the appended
// message up and is STORE \Deleted + EXPUNGE (imapExpungeNoUIDPlus).
func BenchmarkIMAPMixed20(b *testing.B) {
	d := imapSeconds()
	type peer struct {
		name string
		srv  imapServer
		note string // how its run differs, for the summary line
	}
	peers := []peer{{"postern", startPosternIMAP(b), ""}}
	if dove, ok := startDovecotIMAP(b); ok {
		peers = append(peers, peer{"dovecot", dove, ""})
	} else {
		b.Log("Dovecot's IMAP is not available (apt-get install -y dovecot-imapd, as root): left out")
	}
	if md, missing := startMaddyIMAP(b); missing == "" {
		note := "maddy v0.8.1 has no UIDPLUS: its expunge step finds the appended message by Message-ID, then STORE \\Deleted + EXPUNGE"
		peers = append(peers, peer{"maddy", md, note})
		b.Log(note)
	} else {
		b.Log("maddy is left out of the IMAP mixed load: " + missing)
	}
	b.ResetTimer()
	for range b.N {
		totals := map[string]float64{}
		for _, p := range peers {
			res, lat, err := imapLoadTimed(p.srv.addr, d)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			var total int64
			for _, op := range imapOps {
				b.ReportMetric(float64(res[op])/d.Seconds(), p.name+"-"+op+"/s")
				b.ReportMetric(ms(lat[op]), p.name+"-"+op+"-ms")
				total += res[op]
			}
			totals[p.name] = float64(total) / d.Seconds()
			b.ReportMetric(totals[p.name], p.name+"-ops/s")
		}
		line := fmt.Sprintf("IMAP mixed, %d clients, %v: postern %.0f ops/s", imapClients, d, totals["postern"])
		for _, p := range peers[1:] {
			ratio := totals["postern"] / totals[p.name]
			if p.name == "dovecot" {
				b.ReportMetric(ratio, "ratio")
			} else {
				b.ReportMetric(ratio, "ratio-vs-"+p.name)
			}
			line += fmt.Sprintf("; %s %.0f ops/s, Postern/%s %.2f", p.name, totals[p.name], p.name, ratio)
			if p.note != "" {
				line += " (" + p.note + ")"
			}
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

// ms is d in milliseconds, for ReportMetric.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func rssKiB(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skip("no /proc: RSS not measurable here")
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkIMAPIdle1000 reports Postern's memory with 1,000 logged-in
// connections idling (IDLE) on a selected INBOX: the growth of the Go heap
// and stacks in use (from /metrics, which RSS hides: freed memory is kept)
// and the process's RSS.
func BenchmarkIMAPIdle1000(b *testing.B) {
	// A small GOGC makes the heap in use track live memory closely, so
	// that garbage from the setup does not blur the difference.
	peer := startPosternIMAP(b, "GOGC=5")
	inUse := func() float64 {
		resp, err := http.Get("http://" + peer.admin + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var sum float64
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && (f[0] == "go_memstats_heap_inuse_bytes" || f[0] == "go_memstats_stack_inuse_bytes") {
				v, _ := strconv.ParseFloat(f[1], 64)
				sum += v
			}
		}
		return sum
	}
	for range b.N {
		before := inUse()
		var clients []*imapclient.Client
		for range 1000 {
			c, err := imapDial(peer.addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Idle(); err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		time.Sleep(2 * time.Second)
		b.ReportMetric((inUse()-before)/(1<<20), "postern-idle-MiB")
		b.ReportMetric(float64(rssKiB(b, peer.pid))/1024, "postern-rss-MiB")
		for _, c := range clients {
			c.Close()
		}
	}
}
