package imapd

import (
	"net"
	"sync"
	"time"
)

// coalesceMax is how much output is held before it is written anyway.
const coalesceMax = 32 << 10

// writeTimeout bounds every write to the client: output may be written
// later than go-imap set its own deadline for, so this layer sets its own.
const writeTimeout = time.Minute

// coalescer holds a connection's output until the server next reads (the
// answer to a command is complete then) or coalesceMax is reached. Go-imap
// flushes after every response line, so FETCH 1:* over a large mailbox
// cost one TLS record write (a system call and a packet) per message;
// below TLS the records now leave together. While a read is waiting, as
// during IDLE, output goes out at once.
type coalescer struct {
	net.Conn
	mu      sync.Mutex
	buf     []byte
	reading bool
	err     error // from a held write, reported by the next Write or Read
}

func (c *coalescer) writeOut(b []byte) error {
	c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
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

func (c *coalescer) Close() error {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}
