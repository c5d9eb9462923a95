package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	hostname     = "mx.e2e.test"
	readyTimeout = 20 * time.Second
	stopTimeout  = 15 * time.Second
	cliTimeout   = 30 * time.Second
)

// server is one postern process under test, with its own config file and
// data directory. It can be stopped, killed and started again on the same
// data and ports.
type server struct {
	t       *testing.T
	dir     string // holds postern.toml and the data directory
	config  string
	dataDir string
	limits  string // extra lines of the [limits] table
	// render, if set, makes the config file instead of the default one;
	// such a server keeps its ports when one is taken (no re-pick).
	render func() string

	smtpPort  int
	adminPort int

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	stdout *readyWriter
	stderr *syncBuffer
	logs   []string // stderr of earlier runs of this server
}

// newServer prepares a server with the given [limits] lines (TOML, one key
// a line; may be empty). It is not started.
func newServer(t *testing.T, limits string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, config: filepath.Join(dir, "postern.toml"), dataDir: filepath.Join(dir, "data"), limits: limits}
	s.pickPorts()
	s.writeConfig()
	t.Cleanup(func() {
		if s.running() {
			s.stop()
		}
		if t.Failed() {
			for i, l := range append(s.logs, s.stderr.String()) {
				t.Logf("postern log (run %d):\n%s", i+1, tail(l, 60))
			}
		}
	})
	return s
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *server) pickPorts() {
	s.smtpPort = freePort(s.t)
	s.adminPort = freePort(s.t)
	for s.adminPort == s.smtpPort {
		s.adminPort = freePort(s.t)
	}
}

func (s *server) writeConfig() {
	s.t.Helper()
	cfg := fmt.Sprintf(`hostname = %q
data_dir = "data"

[listen]
smtp = ["127.0.0.1:%d"]
admin = ["127.0.0.1:%d"]
submission = []
submissions = []
imap = []
imaps = []
pop3 = []
pop3s = []

[limits]
shutdown_grace = "3s"
command_timeout = "30s"
data_timeout = "30s"
%s
`, hostname, s.smtpPort, s.adminPort, s.limits)
	if s.render != nil {
		cfg = s.render()
	}
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// start runs `postern serve` and waits for "postern ready" on stdout. If
// a port was taken meanwhile (by another process), it picks new ones.
func (s *server) start() {
	s.t.Helper()
	for attempt := 1; ; attempt++ {
		err := s.tryStart()
		if err == nil {
			return
		}
		if attempt < 3 && s.render == nil && strings.Contains(s.stderr.String(), "address already in use") {
			s.logs = append(s.logs, s.stderr.String())
			s.pickPorts()
			s.writeConfig()
			continue
		}
		s.t.Fatalf("postern serve did not become ready: %v\nstderr:\n%s", err, s.stderr.String())
	}
}

func (s *server) tryStart() error {
	if s.stderr != nil {
		s.logs = append(s.logs, s.stderr.String())
	}
	s.stderr = &syncBuffer{}
	s.stdout = &readyWriter{ready: make(chan struct{})}
	cmd := exec.Command(posternBin, "serve", "--config", s.config)
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	ready := s.stdout.ready
	select {
	case <-ready:
		return nil
	case <-s.exited:
		return fmt.Errorf("exited early: %v", cmd.ProcessState)
	case <-time.After(readyTimeout):
		cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("no \"postern ready\" within %v", readyTimeout)
	}
}

// stop sends SIGTERM and checks that the server exits with status 0.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("postern did not exit within %v of SIGTERM", stopTimeout)
		return
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("postern exited with %v after SIGTERM, want status 0", s.cmd.ProcessState)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.t.Fatalf("postern still running %v after SIGKILL", stopTimeout)
	}
}

// cli runs a postern command on this server's config and returns its
// stdout; a failure fails the test.
func (s *server) cli(stdin string, args ...string) string {
	s.t.Helper()
	out, errOut, err := s.cliResult(stdin, args...)
	if err != nil {
		s.t.Fatalf("postern %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (s *server) cliResult(stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, posternBin, append(args, "--config", s.config)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return o.String(), e.String(), err
}

// addDomain and addUser set up accounts through the CLI.
func (s *server) addDomain(name string) {
	s.t.Helper()
	s.cli("", "domain", "add", name)
}

func (s *server) addUser(addr string) {
	s.t.Helper()
	s.cli("secret-"+addr+"\n", "user", "add", addr, "--password-stdin")
}

// export returns the messages of a mailbox as parsed from the mboxrd that
// `postern mailbox export` writes.
func (s *server) export(addr, mailbox string) []mboxMessage {
	s.t.Helper()
	args := []string{"mailbox", "export", addr}
	if mailbox != "" {
		args = append(args, "--mailbox", mailbox)
	}
	msgs, err := parseMboxrd(s.cli("", args...))
	if err != nil {
		s.t.Fatalf("export of %s: %v", addr, err)
	}
	return msgs
}

// mailboxCount returns the MESSAGES column of `postern mailbox list` for
// one mailbox.
func (s *server) mailboxCount(addr, mailbox string) int {
	s.t.Helper()
	out := s.cli("", "mailbox", "list", addr)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == mailbox {
			var n int
			if _, err := fmt.Sscan(f[1], &n); err != nil {
				s.t.Fatalf("mailbox list: bad count in %q", line)
			}
			return n
		}
	}
	s.t.Fatalf("mailbox list %s: no %s in\n%s", addr, mailbox, out)
	return 0
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// readyWriter collects the server's stdout and closes ready once the line
// "postern ready" has been written.
type readyWriter struct {
	syncBuffer
	ready chan struct{}
	seen  bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if !w.seen && strings.Contains(w.syncBuffer.String(), "postern ready\n") {
		w.seen = true
		close(w.ready)
	}
	return n, err
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[%d earlier lines left out]\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "")
}
