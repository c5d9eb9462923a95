// Package e2e holds Postern's end-to-end tests. TestMain builds the postern
// binary once; each test then starts it on free loopback ports with its own
// data directory, drives it with real external clients (Python's smtplib,
// through the scripts in py/, and swaks), checks what was stored with
// `postern mailbox export`, and stops it with SIGTERM, expecting status 0.
//
// Run with `go test ./test/...`. A missing python3 or swaks skips the tests
// that need it, unless the environment variable CI is set (CI=true), in
// which case they fail.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// posternBin is the binary built once for the whole run.
var posternBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "postern-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	posternBin = filepath.Join(dir, "postern")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "build", "-o", posternBin, "github.com/postern-mail/postern/cmd/postern")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building postern:", err)
		return 1
	}
	return m.Run()
}
