package imapd

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// python3 finds Debian's python; a missing one fails the run under CI and
// skips the test elsewhere.
func python3(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("python3 not found (CI is set: run scripts/install-test-deps.sh)")
	}
	t.Skip("python3 not found")
	return ""
}

// TestImaplib runs Python's imaplib through STARTTLS and implicit TLS,
// LOGIN, LIST, SELECT, FETCH, SEARCH, STORE, COPY, MOVE, APPEND, EXPUNGE
// and IDLE; the message it waits for in IDLE is delivered the way SMTP
// delivers (store.Deliver) and must arrive within a second.
func TestImaplib(t *testing.T) {
	py := python3(t)
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	e.deliver(t, strings.Replace(sampleMsg, "Subject: Hello there", "Subject: Second", 1))
	host, plainPort, _ := net.SplitHostPort(e.plainAddr)
	_, tlsPort, _ := net.SplitHostPort(e.tlsAddr)
	cmd := exec.Command(py, "testdata/imaplib_e2e.py", host, plainPort, tlsPort, testUser, testPass)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(stdout)
	var out []string
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if line == "IDLE-READY" {
			e.deliver(t, strings.Replace(sampleMsg, "Subject: Hello there", "Subject: Live", 1))
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("imaplib script: %v\nstdout: %q\nstderr:\n%s", err, out, stderr.String())
	}
	if len(out) == 0 || !strings.HasPrefix(out[len(out)-1], "ALL-OK") {
		t.Fatalf("imaplib script did not finish: %q\n%s", out, stderr.String())
	}
	t.Log(out[len(out)-1])
}
