package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const toolTimeout = 60 * time.Second

// inCI reports whether the CI environment variable asks for a strict run,
// in which a missing external client fails the test instead of skipping it.
func inCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v != "" && v != "0" && v != "false" && v != "no"
}

// needTool fails (under CI) or skips the test when a client is missing.
func needTool(t *testing.T, name, install string) {
	t.Helper()
	msg := name + " is not installed; " + install + " (make test installs it)"
	if inCI() {
		t.Fatalf("CI is set and %s", msg)
	}
	t.Skip(msg)
}

// python returns Debian's /usr/bin/python3 if present, else python3 on PATH.
func python(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/usr/bin/python3"); err == nil && !fi.IsDir() {
		return "/usr/bin/python3"
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		needTool(t, "python3", "install it with apt-get install -y python3")
	}
	return p
}

// swaks returns the path of swaks.
func swaks(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("swaks")
	if err != nil {
		needTool(t, "swaks", "install it with apt-get install -y swaks")
	}
	return p
}

// runPython runs test/py/<script> with args and stdin, and decodes the one
// JSON document it prints into out.
func runPython(t *testing.T, out any, stdin string, script string, args ...string) {
	t.Helper()
	py := python(t)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{filepath.Join("py", script)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", script, strings.Join(args, " "), err, o.String(), e.String())
	}
	if err := json.Unmarshal(o.Bytes(), out); err != nil {
		t.Fatalf("%s: bad JSON output: %v\n%s\nstderr:\n%s", script, err, o.String(), e.String())
	}
}

// runSwaks runs swaks and returns its transcript and exit status.
func runSwaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	sw := swaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sw, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case ctx.Err() != nil:
		t.Fatalf("swaks %s: timed out after %v\n%s", strings.Join(args, " "), toolTimeout, out)
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("swaks: %v", err)
	}
	return "", -1
}

// reply is one SMTP reply as smtp_send.py reports it.
type reply struct {
	Code int    `json:"code"`
	Text string `json:"text"`
}

// sendResult is the JSON printed by py/smtp_send.py.
type sendResult struct {
	Size     int     `json:"size"`
	Banner   reply   `json:"banner"`
	EHLO     reply   `json:"ehlo"`
	StartTLS *reply  `json:"starttls"`
	EHLOTLS  *reply  `json:"ehlo_tls"`
	Mail     *reply  `json:"mail"`
	Rcpt     []reply `json:"rcpt"`
	Data     *reply  `json:"data"`
	TLS      *struct {
		Version string `json:"version"`
		Cipher  string `json:"cipher"`
	} `json:"tls"`
	Error string `json:"error"`
}

// smtplibSend sends one message with py/smtp_send.py (see its flags).
func smtplibSend(t *testing.T, s *server, args ...string) sendResult {
	t.Helper()
	var r sendResult
	runPython(t, &r, "", "smtp_send.py", append([]string{"--port", itoa(s.smtpPort)}, args...)...)
	return r
}

// rawResult is the JSON printed by py/smtp_raw.py.
type rawResult struct {
	Banner  []string   `json:"banner"`
	Replies [][]string `json:"replies"`
	Closed  bool       `json:"closed"`
	Timeout bool       `json:"timeout"` // no reply within 5 s
}

type rawStep struct {
	Send    string `json:"send"`
	Replies int    `json:"replies"`
}

// rawDialogue replays steps byte for byte with py/smtp_raw.py.
func rawDialogue(t *testing.T, s *server, steps ...rawStep) rawResult {
	t.Helper()
	req, err := json.Marshal(map[string]any{"port": s.smtpPort, "steps": steps})
	if err != nil {
		t.Fatal(err)
	}
	var r rawResult
	runPython(t, &r, string(req), "smtp_raw.py")
	return r
}

func itoa(i int) string { return strconv.Itoa(i) }
