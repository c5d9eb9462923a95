// Package mbox writes messages in the mboxrd format (used by postern
// mailbox export): each message starts with a "From " line, lines end
// with LF, and any line matching ^>*From gets one more '>' so that readers
// can undo the quoting exactly.
package mbox

import (
	"bufio"
	"bytes"
	"io"
	"time"
)

// Writer writes messages to an mboxrd stream.
type Writer struct {
	w *bufio.Writer
}

// NewWriter returns a Writer on w; call Flush when done.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriter(w)}
}

// Write appends one message read from r (CRLF or LF line ends).
func (mw *Writer) Write(from string, date time.Time, r io.Reader) error {
	if from == "" {
		from = "MAILER-DAEMON"
	}
	if _, err := mw.w.WriteString("From " + from + " " + date.UTC().Format(time.ANSIC) + "\n"); err != nil {
		return err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	endedWithNL := true
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if err := mw.writeLine(line); err != nil {
				return err
			}
			endedWithNL = line[len(line)-1] == '\n'
		}
		if err == bufio.ErrBufferFull {
			// A very long line: the rest follows in the next slice, unquoted.
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				if len(line) > 0 {
					if _, werr := mw.w.Write(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))); werr != nil {
						return werr
					}
					if line[len(line)-1] == '\n' {
						mw.w.WriteByte('\n')
					}
					endedWithNL = line[len(line)-1] == '\n'
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !endedWithNL {
		mw.w.WriteByte('\n')
	}
	return mw.w.WriteByte('\n')
}

func (mw *Writer) writeLine(line []byte) error {
	body := bytes.TrimSuffix(line, []byte("\n"))
	nl := len(body) != len(line)
	body = bytes.TrimSuffix(body, []byte("\r"))
	if isFromLine(body) {
		mw.w.WriteByte('>')
	}
	if _, err := mw.w.Write(body); err != nil {
		return err
	}
	if nl {
		return mw.w.WriteByte('\n')
	}
	return nil
}

func isFromLine(b []byte) bool {
	i := 0
	for i < len(b) && b[i] == '>' {
		i++
	}
	return bytes.HasPrefix(b[i:], []byte("From "))
}

// Flush writes buffered data.
func (mw *Writer) Flush() error { return mw.w.Flush() }
