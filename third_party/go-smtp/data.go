package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int
	// pending holds a byte owed to the reader: the CR of a ".\r" line
	// start that turned out not to end the data (Postern patch).
	pending    byte
	hasPending bool

	limited bool
	n       int64 // Maximum bytes remaining
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

// Read implements RFC 5321 4.5.2 transparency strictly (Postern patch):
// only <CRLF>.<CRLF> (or .<CRLF> at the very start) ends the data, a
// leading dot is removed only at the start of a line that began after a
// CRLF, and every other byte, bare CR and bare LF included, is passed
// through unchanged so that the backend can refuse it. The upstream state
// machine lost the CR of ".\r<x>" and missed the end marker after "\r\r\n".
func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			// Postern patch: a message of exactly the limit is fine; only
			// a byte of content beyond it (not the end marker) is too much.
			var one [1]byte
			r.limited = false
			m, err := r.Read(one[:])
			r.limited = true
			if m > 0 {
				return 0, ErrDataTooLarge
			}
			return 0, err
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	const (
		stateBeginLine = iota // after CRLF, or at the start; must be zero
		stateDot              // read a leading '.' (removed)
		stateDotCR            // read a leading ".\r" (CR held back)
		stateCR               // last byte was CR
		stateData             // in the middle of a line
		stateEOF              // read the end marker
	)
	for n < len(b) && r.state != stateEOF {
		if r.hasPending {
			b[n] = r.pending
			n++
			r.hasPending = false
			continue
		}
		if r.state == stateData && r.r.Buffered() > 0 {
			// Postern patch: in the middle of a line, pass on the
			// buffered run of bytes up to the next CR or LF at once
			// (neither the state nor any byte changes there) instead of
			// one ReadByte per byte.
			avail := r.r.Buffered()
			if avail > len(b)-n {
				avail = len(b) - n
			}
			peek, _ := r.r.Peek(avail)
			run := len(peek)
			if i := bytes.IndexByte(peek, '\n'); i >= 0 {
				run = i
			}
			if i := bytes.IndexByte(peek[:run], '\r'); i >= 0 {
				run = i
			}
			if run > 0 {
				n += copy(b[n:], peek[:run])
				r.r.Discard(run)
				continue
			}
		}
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			// ".\r" then something else: give back the CR first.
			b[n] = '\r'
			n++
			r.state = stateCR
			if n == len(b) {
				r.pending, r.hasPending = c, true
				r.state = nextDataState(stateCR, c)
				continue
			}
			r.state = nextDataState(stateCR, c)
			b[n] = c
			n++
			continue
		}
		if r.state == stateBeginLine || r.state == stateDot {
			r.state = stateData
		}
		r.state = nextDataState(r.state, c)
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}

// nextDataState is the state after byte c was passed through from state
// stateCR (3) or stateData (4): only CR LF starts a new line.
func nextDataState(state int, c byte) int {
	const stateBeginLine, stateCR, stateData = 0, 3, 4
	switch {
	case c == '\r':
		return stateCR
	case c == '\n' && state == stateCR:
		return stateBeginLine
	default:
		return stateData
	}
}
