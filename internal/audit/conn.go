package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxLine bounds one line read from the server; maxReplyLines bounds a
// multi-line SMTP reply.
const (
	maxLine       = 8192
	maxReplyLines = 200
)

var errLineTooLong = errors.New("server sent an over-long line")

// conn is a line-oriented client connection with a timeout on every
// exchange and an overall deadline.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	timeout  time.Duration
	deadline time.Time
	isTLS    bool
}

// dial connects to the target, wrapping the connection in TLS at once when
// implicit is set.
func dial(ctx context.Context, o *Options, implicit bool) (*conn, error) {
	d := o.Dial
	if d == nil {
		nd := &net.Dialer{Timeout: o.Timeout}
		d = nd.DialContext
	}
	nc, err := d(ctx, "tcp", o.Target)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), timeout: o.Timeout}
	if dl, ok := ctx.Deadline(); ok {
		c.deadline = dl
	}
	if implicit {
		if err := c.startTLS(o.tlsConfig()); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *conn) Close() error { return c.nc.Close() }

func (c *conn) setDeadline() {
	dl := time.Now().Add(c.timeout)
	if !c.deadline.IsZero() && c.deadline.Before(dl) {
		dl = c.deadline
	}
	c.nc.SetDeadline(dl)
}

// writeLine sends one command line, adding CRLF.
func (c *conn) writeLine(s string) error {
	return c.writeRaw([]byte(s + "\r\n"))
}

// writeRaw sends bytes as they are, in one write.
func (c *conn) writeRaw(b []byte) error {
	c.setDeadline()
	_, err := c.nc.Write(b)
	return err
}

// readLine reads one line without its line ending.
func (c *conn) readLine() (string, error) {
	c.setDeadline()
	var line []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		line = append(line, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > maxLine {
				return "", errLineTooLong
			}
			continue
		}
		if len(line) > 0 && errors.Is(err, net.ErrClosed) {
			break
		}
		return "", err
	}
	return printable(strings.TrimRight(string(line), "\r\n")), nil
}

// printable escapes control characters and invalid UTF-8 in what a server
// sent, so that a hostile server cannot drive the auditor's terminal
// (ANSI escapes) or forge report lines; tabs stay.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (r != '\t' && unicode.IsControl(r)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r != '\t' && unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// reply is one SMTP reply.
type reply struct {
	code  int
	lines []string // the raw lines, code included
	took  time.Duration
}

// text is the reply's lines joined, for evidence and matching.
func (r reply) text() string { return strings.Join(r.lines, " / ") }

// first is the first line of the reply.
func (r reply) first() string {
	if len(r.lines) == 0 {
		return ""
	}
	return r.lines[0]
}

func (r reply) positive() bool  { return r.code >= 200 && r.code < 400 }
func (r reply) transient() bool { return r.code >= 400 && r.code < 500 }
func (r reply) permanent() bool { return r.code >= 500 }

// readReply reads one SMTP reply, multi-line or not (RFC 5321 4.2.1).
func (c *conn) readReply() (reply, error) {
	start := time.Now()
	var r reply
	for i := 0; i < maxReplyLines; i++ {
		l, err := c.readLine()
		if err != nil {
			r.took = time.Since(start)
			return r, err
		}
		r.lines = append(r.lines, l)
		if len(l) < 3 {
			return r, fmt.Errorf("malformed reply %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || code < 100 || code > 599 {
			return r, fmt.Errorf("malformed reply %q", l)
		}
		r.code = code
		if len(l) == 3 || l[3] != '-' {
			r.took = time.Since(start)
			return r, nil
		}
	}
	return r, fmt.Errorf("reply longer than %d lines", maxReplyLines)
}

// cmd sends an SMTP command and reads its reply.
func (c *conn) cmd(line string) (reply, error) {
	if err := c.writeLine(line); err != nil {
		return reply{}, err
	}
	return c.readReply()
}

// startTLS performs a TLS client handshake over the connection.
func (c *conn) startTLS(cfg *tls.Config) error {
	tc := tls.Client(c.nc, cfg)
	c.setDeadline()
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.nc = tc
	c.br = bufio.NewReaderSize(tc, 4096)
	c.isTLS = true
	return nil
}

// tlsState returns the negotiated TLS state, if any.
func (c *conn) tlsState() (tls.ConnectionState, bool) {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return tc.ConnectionState(), true
}

// pending reports whether the server sends anything within wait, and
// returns the first line it sends (used by the STARTTLS injection check).
func (c *conn) pending(wait time.Duration) (string, bool) {
	c.nc.SetReadDeadline(time.Now().Add(wait))
	defer c.setDeadline()
	l, err := c.br.ReadString('\n')
	if l == "" && err != nil {
		return "", false
	}
	return printable(strings.TrimRight(l, "\r\n")), true
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// greetingError explains a missing greeting; silence on a clear-text
// connection usually means the port expects implicit TLS.
func greetingError(o *Options, implicit bool, err error) error {
	if isTimeout(err) && !implicit {
		return fmt.Errorf("%s: no greeting within %s (if the port expects implicit TLS, add --tls): %w", o.Target, o.Timeout, err)
	}
	return fmt.Errorf("%s: reading the greeting: %w", o.Target, err)
}
