package smtpd

import (
	"bytes"
	"errors"
	"io"
)

var errBareLineEnd = errors.New("bare CR or LF in message data")

// maxHeaderCapture bounds how much of the header section is kept for parsing.
const maxHeaderCapture = 256 << 10

// lineChecker passes message data through, refusing any CR not followed by
// LF and any LF not preceded by CR (RFC 5321 2.3.8), and keeps a copy of the
// header section.
type lineChecker struct {
	w      io.Writer
	prevCR bool
	last   byte
	n      int64
	inBody bool
	header bytes.Buffer
	err    error
}

func (c *lineChecker) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for i, b := range p {
		if c.prevCR && b != '\n' || b == '\n' && !c.prevCR {
			c.err = errBareLineEnd
			// Keep consuming: go-smtp drains the rest and we answer once.
			_ = i
			return len(p), nil
		}
		c.prevCR = b == '\r'
	}
	if !c.inBody {
		c.captureHeader(p)
	}
	c.n += int64(len(p))
	c.last = p[len(p)-1]
	_, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return len(p), err
}

func (c *lineChecker) captureHeader(p []byte) {
	room := maxHeaderCapture - c.header.Len()
	if room <= 0 {
		c.inBody = true
		return
	}
	if len(p) > room {
		p = p[:room]
	}
	start := c.header.Len() - 3
	if start < 0 {
		start = 0
	}
	c.header.Write(p)
	// The header section ends at the first empty line.
	if c.header.Len() >= 2 && bytes.HasPrefix(c.header.Bytes(), []byte("\r\n")) {
		c.header.Reset()
		c.inBody = true
		return
	}
	if i := bytes.Index(c.header.Bytes()[start:], []byte("\r\n\r\n")); i >= 0 {
		c.header.Truncate(start + i + 4)
		c.inBody = true
	}
}

// finish reports a final bare CR and makes sure the stored message ends with
// CRLF (a BDAT message may not).
func (c *lineChecker) finish() error {
	if c.err != nil {
		return c.err
	}
	if c.prevCR {
		return errBareLineEnd
	}
	if c.n > 0 && c.last != '\n' {
		_, err := c.w.Write([]byte("\r\n"))
		return err
	}
	return nil
}
