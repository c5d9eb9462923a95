package courier

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// dataWriter writes a stored message as the text of DATA (RFC 5321 4.5.2)
// through a buffer: every line end goes out as CRLF, a bare CR or LF too
// (RFC 5321 2.3.8: they must never be sent), and a '.' that starts a line
// is doubled. It looks for line ends with bytes.IndexByte and copies the
// runs between them, so that its cost is per line, not per byte.
//
// The message's last line end is not written: the caller sends it through
// go-smtp's data writer, whose Close then adds just the final ".\r\n" (with
// nothing written through it, it would add an empty line first).
type dataWriter struct {
	bw  *bufio.Writer
	bol bool // at the beginning of a line
	cr  bool // the last byte was a CR: a line end, with or without its LF
	eol bool // a line end is owed, to be written before the next byte
}

var dataBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

func newDataWriter(w io.Writer) *dataWriter {
	bw := dataBuffers.Get().(*bufio.Writer)
	bw.Reset(w)
	return &dataWriter{bw: bw, bol: true}
}

func (d *dataWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if d.cr {
			d.cr, d.eol = false, true
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		if d.eol {
			d.bw.WriteString("\r\n")
			d.eol, d.bol = false, true
		}
		if d.bol && p[0] == '.' {
			d.bw.WriteByte('.') // RFC 5321 4.5.2
		}
		d.bol = false
		lf := bytes.IndexByte(p, '\n')
		line := p
		if lf >= 0 {
			line = p[:lf]
		}
		if cr := bytes.IndexByte(line, '\r'); cr >= 0 {
			d.bw.Write(p[:cr])
			d.cr = true
			p = p[cr+1:]
			continue
		}
		d.bw.Write(line)
		if lf < 0 {
			break
		}
		d.eol = true
		p = p[lf+1:]
	}
	// bufio.Writer keeps the first error of the connection; Write(nil)
	// reports it.
	if _, err := d.bw.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// flush writes out what is buffered (all but the last line end) and gives
// the buffer back; d must not be used after.
func (d *dataWriter) flush() error {
	err := d.bw.Flush()
	d.bw.Reset(nil)
	dataBuffers.Put(d.bw)
	d.bw = nil
	return err
}

// deadlineWriter refreshes the connection's write deadline before each write.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.nc.Write(p)
}
