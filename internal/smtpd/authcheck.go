package smtpd

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
)

// Checker authenticates the sender of a message received on the MX (SPF,
// DKIM, DMARC: internal/msgauth). Authenticated submission is never checked.
type Checker interface {
	// Check reads the message as it arrives (msg ends at the end of data,
	// or fails with the transfer) and says what to do with it. An error
	// means msg could not be read.
	Check(ctx context.Context, ip net.IP, helo, mailFrom string, msg io.Reader) (CheckResult, error)
}

// Verdict is a Checker's decision.
type Verdict int

// Verdicts.
const (
	VerdictAccept   Verdict = iota // file into INBOX
	VerdictJunk                    // file into Junk
	VerdictReject                  // 550 5.7.x at the end of data
	VerdictTempFail                // 451 4.7.x at the end of data
)

// CheckResult is the outcome of a Checker.
type CheckResult struct {
	// Header is the Authentication-Results field to add, ending in CRLF.
	Header  string
	Verdict Verdict
	// Enhanced is the enhanced status code of a reject or tempfail (zero:
	// 5.7.1 or 4.7.0), Reason the text of the reply.
	Enhanced [3]int
	Reason   string
	// Summary is a short form of the results for the log and the trace,
	// e.g. "spf=pass dkim=pass dmarc=pass".
	Summary string
}

// checkRun is a Checker reading a copy of the message while it arrives.
//
// Why it streams: the message goes to its blob as it arrives (it is stored
// once and may be large), so the Checker reads a copy through a pipe at the
// same time, and its SPF lookups overlap the transfer. Its outcome is known
// only after the whole message is stored, too late to put a header into
// the blob, so the Authentication-Results field goes into each recipient's
// prefix (prepended on read, after Return-Path and Delivered-To, above our
// Received). Incoming Authentication-Results fields claiming our authserv-id
// are dropped on the way into the blob by arFilter, while the Checker sees
// the message as sent (a DKIM signature may cover them).
type checkRun struct {
	pw   *io.PipeWriter
	done chan struct{}
	res  CheckResult
	err  error
}

func startCheck(c Checker, ip net.IP, helo, mailFrom string) *checkRun {
	pr, pw := io.Pipe()
	run := &checkRun{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.res, run.err = c.Check(context.Background(), ip, helo, mailFrom, pr)
		// The Checker may stop reading early: let the writer go on alone.
		pr.Close()
	}()
	return run
}

// finish ends the copy (with the transfer's error, if any) and waits for
// the outcome.
func (r *checkRun) finish(err error) (CheckResult, error) {
	if err != nil {
		r.pw.CloseWithError(err)
	} else {
		r.pw.Close()
	}
	<-r.done
	return r.res, r.err
}

// teeWriter writes to w and to a Checker's pipe; the pipe failing (the
// Checker is done) only stops the copy.
type teeWriter struct {
	w    io.Writer
	side io.Writer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	if t.side != nil {
		if _, err := t.side.Write(p); err != nil {
			t.side = nil
		}
	}
	return t.w.Write(p)
}

// maxFieldBuffer bounds how much of one header field arFilter holds back.
const maxFieldBuffer = 64 << 10

// arFilter passes a message through, dropping from its header section every
// Authentication-Results field whose authserv-id is ours (RFC 8601 5): such a
// field was forged, or added inside our domain before, and a reader would
// take it for ours. It holds back one header field at a time.
type arFilter struct {
	w       io.Writer
	id      string // our authserv-id
	inBody  bool
	line    []byte // the current, unfinished line
	field   []byte // the current field, whole lines
	decided bool   // the current field outgrew the buffer: its fate is set
	drop    bool   // ... and it is dropped
	dropped int
}

func (f *arFilter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !f.inBody {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.line = append(f.line, p...)
			if len(f.line) > maxFieldBuffer {
				// No line is this long in a header: pass the rest through.
				if err := f.flushField(); err != nil {
					return 0, err
				}
				f.inBody = true
				if _, err := f.w.Write(f.line); err != nil {
					return 0, err
				}
				f.line = nil
			}
			return n, nil
		}
		f.line = append(f.line, p[:i+1]...)
		p = p[i+1:]
		if err := f.endLine(); err != nil {
			return 0, err
		}
	}
	if len(p) > 0 {
		if _, err := f.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// endLine takes a finished line of the header section.
func (f *arFilter) endLine() error {
	line := f.line
	f.line = f.line[:0]
	if line[0] == ' ' || line[0] == '\t' { // a continuation
		switch {
		case f.decided && !f.drop:
			_, err := f.w.Write(line)
			return err
		case f.decided:
			return nil
		}
		f.field = append(f.field, line...)
		if len(f.field) > maxFieldBuffer {
			f.decided, f.drop = true, f.isOurs()
			if !f.drop {
				_, err := f.w.Write(f.field)
				f.field = f.field[:0]
				return err
			}
			f.field = f.field[:0]
		}
		return nil
	}
	if err := f.flushField(); err != nil {
		return err
	}
	if string(line) == "\r\n" || string(line) == "\n" {
		// The empty line ending the header section.
		f.inBody = true
		_, err := f.w.Write(line)
		return err
	}
	f.field = append(f.field, line...)
	return nil
}

// flushField writes or drops the field held back.
func (f *arFilter) flushField() error {
	defer func() { f.field, f.decided, f.drop = f.field[:0], false, false }()
	if f.decided || len(f.field) == 0 {
		return nil
	}
	if f.isOurs() {
		f.dropped++
		return nil
	}
	_, err := f.w.Write(f.field)
	return err
}

// finish writes what is still held back (a message that is all header).
func (f *arFilter) finish() error {
	if f.inBody {
		return nil
	}
	if len(f.line) > 0 {
		if err := f.endLine(); err != nil {
			return err
		}
	}
	return f.flushField()
}

// isOurs reports whether the held-back field is an Authentication-Results
// field with our authserv-id.
func (f *arFilter) isOurs() bool {
	name, value, ok := bytes.Cut(f.field, []byte(":"))
	if !ok || !strings.EqualFold(strings.TrimSpace(string(name)), "Authentication-Results") {
		return false
	}
	return strings.EqualFold(authServID(string(value)), f.id)
}

// authServID returns the authserv-id at the start of an
// Authentication-Results value (RFC 8601 2.2: [CFWS] authserv-id, a token or
// quoted-string), "" if there is none.
func authServID(v string) string {
	v = skipCFWS(v)
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return ""
	}
	end := strings.IndexAny(v, " \t\r\n;(")
	if end < 0 {
		end = len(v)
	}
	return v[:end]
}

// skipCFWS skips folding white space and (nested) comments.
func skipCFWS(v string) string {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return v[i:]
		}
	}
	return ""
}
