// Command postern runs a domain's whole mail system and manages its data.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/postern-mail/postern/internal/config"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status: 0 success,
// 1 failure, 2 a configuration or usage error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "postern: "+err.Error())
	var cerr *config.Error
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &cerr):
		return 2
	case isUsageError(err):
		return 2
	}
	return 1
}
