package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// writeMessage copies a message to w as a POP3 multi-line response body
// (RFC 1939 3): every line ends in CRLF (a bare LF becomes CRLF), a line
// that starts with "." gets another one in front, and ".\r\n" ends it.
// With bodyLines >= 0 only the header, the blank line after it and that
// many body lines are sent (TOP); -1 sends everything (RETR).
func writeMessage(w *bufio.Writer, r io.Reader, bodyLines int) error {
	br := bufio.NewReaderSize(r, 32<<10)
	inHeader := true
	sent := 0         // body lines sent
	lineStart := true // the next chunk begins a line
	for {
		if !inHeader && bodyLines >= 0 && sent >= bodyLines && lineStart {
			break
		}
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) && chunk[len(chunk)-1] == '\r' {
			br.UnreadByte() // keep a CR with the LF that may follow it
			chunk = chunk[:len(chunk)-1]
		}
		if len(chunk) > 0 {
			if lineStart && chunk[0] == '.' {
				w.WriteByte('.')
			}
			complete := chunk[len(chunk)-1] == '\n'
			content := chunk
			if complete {
				content = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte("\r"))
			}
			w.Write(content)
			if complete {
				w.WriteString("\r\n")
				if inHeader {
					if lineStart && len(content) == 0 {
						inHeader = false
					}
				} else {
					sent++
				}
			}
			lineStart = complete
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !lineStart {
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}
