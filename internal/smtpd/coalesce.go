package smtpd

import (
	"net"
	"sync"
	"time"
)

// coalesceMax is how much output is held before it is written anyway.
const coalesceMax = 32 << 10

// coalesceWriteTimeout bounds every write to the client: held output is
// written later than go-smtp set its own deadline for.
const coalesceWriteTimeout = time.Minute

// coalescer holds a connection's output until the server next reads (the
// reply to a command, or to a pipelined group of commands, is complete
// then), closes it, or coalesceMax is reached. Go-smtp flushes after every
// line, so a multi-line reply (EHLO) left in several TCP segments, and
// clients that read one segment as the whole reply fell out of step: nmap's
// smtp-enum-users read the rest of EHLO as the answer to its first VRFY
// and reported a user that does not exist. While a read is waiting, output
// goes out at once. (The same as imapd's coalescer, which has the same
// reason to exist below go-imap.)
type coalescer struct {
	net.Conn
	mu      sync.Mutex
	buf     []byte
	reading bool
	err     error // from a held write, reported by the next Write or Read
}

func (c *coalescer) writeOut(b []byte) error {
	c.Conn.SetWriteDeadline(time.Now().Add(coalesceWriteTimeout))
	_, err := c.Conn.Write(b)
	c.Conn.SetWriteDeadline(time.Time{})
	if err != nil {
		c.err = err
	}
	return err
}

func (c *coalescer) flushLocked() error {
	if len(c.buf) == 0 || c.err != nil {
		c.buf = c.buf[:0]
		return c.err
	}
	err := c.writeOut(c.buf)
	c.buf = c.buf[:0]
	if cap(c.buf) > 1024 {
		c.buf = nil // no large buffer kept on a connection that goes idle
	}
	return err
}

func (c *coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.reading {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if err := c.writeOut(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= coalesceMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *coalescer) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.reading = err == nil
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return n, err
}

// Close writes what is held (a last 221 or 421) and closes.
func (c *coalescer) Close() error {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// flushOutput writes what c's coalescer holds now. A session calls it
// before a deliberate wait (a tarpit or login delay), so that the wait
// shows on the reply it delays, not on earlier ones held with it.
func flushOutput(c net.Conn) {
	if lc := limitedConnOf(c); lc != nil {
		if co, ok := lc.Conn.(*coalescer); ok {
			co.mu.Lock()
			co.flushLocked()
			co.mu.Unlock()
		}
	}
}

// pause flushes the session's held replies, then waits d.
func (ss *session) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	flushOutput(ss.conn.Conn())
	time.Sleep(d)
}
