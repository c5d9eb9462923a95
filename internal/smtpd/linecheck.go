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
	if err := c.scan(p); err != nil {
		c.err = err
		// Keep consuming: go-smtp drains the rest and we answer once.
		return len(p), nil
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

// scan checks p line by line: it finds each LF, and looks for CRs and
// NULs in the bytes before it, instead of stepping through every byte.
// Faults are found where a byte-by-byte scan finds them: a bare CR at the
// byte after it (a CR ending p waits for the next write), a bare LF at
// itself, an over-long line at the byte that makes it too long (the LF to
// come counted), the earliest of these first.
func (c *lineChecker) scan(p []byte) error {
	for len(p) > 0 {
		lf := bytes.IndexByte(p, '\n')
		seg := p
		if lf >= 0 {
			seg = p[:lf]
		}
		if len(seg) > 0 {
			bareAt := -1 // index in seg of the byte that shows a CR bare
			if c.prevCR {
				bareAt = 0
			} else if i := bytes.IndexByte(seg[:len(seg)-1], '\r'); i >= 0 {
				bareAt = i + 1
			}
			longAt := -1 // index in seg of the byte that makes the line too long
			if c.maxLine > 0 && c.lineLen+len(seg)+1 > c.maxLine {
				longAt = max(c.maxLine-c.lineLen-1, 0)
			}
			switch {
			case bareAt >= 0 && (longAt < 0 || bareAt <= longAt):
				return errBareLineEnd
			case longAt >= 0:
				return errLongLine
			}
			if bytes.IndexByte(seg, 0) >= 0 {
				c.nul = true
			}
			c.prevCR = seg[len(seg)-1] == '\r'
			c.lineLen += len(seg)
		}
		if lf < 0 {
			break
		}
		if !c.prevCR {
			return errBareLineEnd
		}
		c.prevCR = false
		c.lineLen = 0
		p = p[lf+1:]
	}
	return nil
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
