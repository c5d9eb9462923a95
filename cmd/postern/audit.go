package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/postern-mail/postern/internal/audit"
)

// auditCmd is `postern audit smtp|imap|pop3 HOST:PORT`: it needs no config
// file or data directory.
func (a *app) auditCmd() *cobra.Command {
	var (
		o                 audit.Options
		usersFile, failOn string
		asJSON, quiet     bool
	)
	c := &cobra.Command{
		Use:   "audit smtp|imap|pop3 HOST:PORT",
		Short: "Audit a mail server as an attacker sees it: banner, TLS, users, relay",
		Long: `Audit any SMTP, IMAP or POP3 server (Postern or not) the way an attacker sees it.

smtp: banner and EHLO with a software fingerprint, extensions, STARTTLS (TLS
version, cipher, certificate), AUTH before TLS, STARTTLS injection, VRFY and
EXPN, user enumeration (--users) with catch-all, throttling, tarpit and
greylisting detection, and the 16 open-relay variants of nmap's
smtp-open-relay (no message is sent unless --relay-data); with --smuggling,
which end-of-data sequences the server takes (one test message each).
imap, pop3: banner, capabilities, STARTTLS/STLS or implicit TLS (--tls, or
ports 993/995), plaintext login before TLS, STARTTLS injection, ID and
IMPLEMENTATION leaks.

Exit status: 0 no finding at or above --fail-on, 1 such findings, 2 a usage
or connection error.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			proto := strings.ToLower(args[0])
			if proto != "smtp" && proto != "imap" && proto != "pop3" {
				return usageError{fmt.Errorf("unknown protocol %q: want smtp, imap or pop3", args[0])}
			}
			o.Target = args[1]
			threshold, err := audit.ParseSeverity(failOn)
			if err != nil {
				return usageError{fmt.Errorf("--fail-on: %v", err)}
			}
			if usersFile != "" {
				if proto != "smtp" {
					return usageError{errors.New("--users works with smtp only")}
				}
				if o.Users, err = readLines(usersFile, a.stdin); err != nil {
					return usageError{fmt.Errorf("--users: %v", err)}
				}
			}
			if !quiet && isTerminal(a.stderr) && len(o.Users) > 0 {
				o.Progress = progressBar(a.stderr)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			r, err := audit.Run(ctx, proto, o)
			if o.Progress != nil {
				fmt.Fprintln(a.stderr)
			}
			if errors.Is(err, audit.ErrUsage) {
				return usageError{errors.New(strings.TrimPrefix(err.Error(), "usage: "))}
			}
			if r != nil && (asJSON || r.Banner != "") {
				if asJSON {
					if werr := r.WriteJSON(a.stdout); werr != nil {
						return werr
					}
				} else if werr := r.WriteText(a.stdout); werr != nil {
					return werr
				}
			}
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			n := 0
			for _, f := range r.Findings {
				if f.Severity.Rank() >= threshold.Rank() {
					n++
				}
			}
			if n > 0 {
				return &exitError{code: 1, err: fmt.Errorf("audit: %d finding(s) at or above %s", n, threshold)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&usersFile, "users", "", "file of names or addresses to try, one per line, - for stdin (smtp)")
	f.StringVar(&o.Domain, "domain", "", "domain for names without one and for probes (default: the name in the greeting)")
	f.StringVar(&o.Method, "method", "auto", "user enumeration method: auto, vrfy, expn or rcpt")
	f.StringVar(&o.From, "from", "", "envelope sender of RCPT probes (default: the null sender <>)")
	f.IntVar(&o.Concurrency, "concurrency", 1, "connections used for user enumeration")
	f.Float64Var(&o.Rate, "rate", 0, "at most this many guesses per second over all connections (0: no limit)")
	f.StringVar(&o.RelayTo, "relay-to", "", "outside recipient for the open-relay check (default "+audit.DefaultRelayTo+")")
	f.BoolVar(&o.RelayData, "relay-data", false, "when a relay recipient is accepted, also send a harmless test message to --relay-to")
	f.BoolVar(&o.Smuggling, "smuggling", false, "test SMTP smuggling: sends one harmless test message per end-of-data sequence to --smuggling-to")
	f.StringVar(&o.SmuggleTo, "smuggling-to", "", "recipient of the smuggling test messages, accepted by the server (default --relay-to)")
	f.BoolVar(&o.NoRelay, "no-relay", false, "skip the open-relay check")
	f.BoolVar(&o.TLS, "tls", false, "implicit TLS (implied by ports 465, 993 and 995)")
	f.StringVar(&o.HeloName, "helo", "", "name sent in EHLO (default: our address literal)")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "time allowed for each connection and reply")
	f.DurationVar(&o.Deadline, "deadline", 5*time.Minute, "time allowed for the whole audit")
	f.DurationVar(&o.SlowReply, "slow-reply", time.Second, "replies slower than this mark a tarpit")
	f.StringVar(&failOn, "fail-on", "high", "exit 1 when a finding is at least this severe: info, low, medium or high")
	f.BoolVar(&asJSON, "json", false, "print one JSON document (see DESIGN.md)")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	return c
}

// readLines reads a wordlist from a file, or from stdin for "-".
func readLines(path string, stdin io.Reader) ([]string, error) {
	r := stdin
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	fh, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := fh.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws a one-line bar on w, redrawn in place.
func progressBar(w io.Writer) func(done, total int) {
	return func(done, total int) {
		if total <= 0 {
			return
		}
		const width = 30
		n := done * width / total
		fmt.Fprintf(w, "\renumerating [%s%s] %d/%d", strings.Repeat("=", n), strings.Repeat(" ", width-n), done, total)
	}
}
