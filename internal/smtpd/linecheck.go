package smtpd

import (
	"bytes"
	"errors"
	"io"
)

var (
	errBareLineEnd = errors.New("bare CR or LF in message data")
	errNUL         = errors.New("NUL character in message data")
	errLongLine    = errors.New("line too long in message data")
)

// maxHeaderCapture bounds how much of the header section is kept for parsing.
const maxHeaderCapture = 256 << 10

// lineChecker passes message data through, refusing any CR not followed by
// LF and any LF not preceded by CR (RFC 5321 2.3.8), any NUL (RFC 5322 2.1
// and RFC 5321 4.5.2 allow none; BINARYMIME, which would, is not offered)
// and, when maxLine is set, any line longer than maxLine octets with its
// CRLF. It keeps a copy of the header section.
//
// go-smtp bounds DATA lines itself (closing the connection), but reads BDAT
// chunks without a line limit: maxLine holds both to the same
// max_line_length.
type lineChecker struct {
	w       io.Writer
	maxLine int
	prevCR  bool
	lineLen int
	last    byte
	n       int64
	inBody  bool
	header  bytes.Buffer
	err     error
	// nul is set at the first NUL: nothing more is passed on, but the
	// data is still scanned, so that a bare line end (the graver fault,
	// SMTP smuggling) is the one reported.
	nul bool
}

func (c *lineChecker) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for _, b := range p {
		if c.prevCR && b != '\n' || b == '\n' && !c.prevCR {
			c.err = errBareLineEnd
			// Keep consuming: go-smtp drains the rest and we answer once.
			return len(p), nil
		}
		c.prevCR = b == '\r'
		c.lineLen++
		if b == '\n' {
			c.lineLen = 0
		} else if c.maxLine > 0 && c.lineLen+1 > c.maxLine { // +1: the LF to come
			c.err = errLongLine
			return len(p), nil
		}
		if b == 0 {
			c.nul = true
		}
	}
	if c.nul {
		return len(p), nil
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
	if c.nul {
		return errNUL
	}
	if c.n > 0 && c.last != '\n' {
		_, err := c.w.Write([]byte("\r\n"))
		return err
	}
	return nil
}
