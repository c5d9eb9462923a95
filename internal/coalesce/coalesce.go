// Package coalesce holds a server connection's output until the server
// next reads, so that a reply written line by line leaves in one write.
//
// go-smtp and go-imap flush after every line. For SMTP a multi-line reply
// (EHLO) then left in several TCP segments, and clients that read one
// segment as the whole reply fell out of step (nmap's smtp-enum-users read
// the rest of EHLO as the answer to its first VRFY and reported a user that
// does not exist). For IMAP, FETCH 1:* over a large mailbox cost one TLS
// record write (a system call and a packet) per message. Below TLS the
// records now leave together.
package coalesce

import (
	"net"
	"sync"
	"time"
)

// Max is how much output is held before it is written anyway.
const Max = 32 << 10

// WriteTimeout bounds every write to the client: held output is written
// later than the protocol library set its own deadline for, so this layer
// sets its own.
const WriteTimeout = time.Minute

// Conn holds output until the next Read (the answer to a command, or to a
// pipelined group of commands, is complete then), Close, Flush or Max
// bytes. While a Read is waiting, as during IMAP IDLE, output goes out at
// once.
type Conn struct {
	net.Conn
	mu      sync.Mutex
	buf     []byte
	reading bool
	err     error // from a held write, reported by the next Write or Read
}

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

func (c *Conn) writeOut(b []byte) error {
	c.Conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
	_, err := c.Conn.Write(b)
	c.Conn.SetWriteDeadline(time.Time{})
	if err != nil {
		c.err = err
	}
	return err
}

func (c *Conn) flushLocked() error {
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

// Flush writes what is held now. A session calls it before a deliberate
// wait (a tarpit or login delay), so that the wait shows on the reply it
// delays, not on earlier ones held with it.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *Conn) Write(p []byte) (int, error) {
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
	if len(c.buf) >= Max {
		// More output is coming (FETCH 1:*): keep the buffer for it; the
		// flush at the next Read lets it go.
		err := c.writeOut(c.buf)
		c.buf = c.buf[:0]
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *Conn) Read(p []byte) (int, error) {
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

// Close writes what is held (a last 221, 421 or BYE) and closes.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}
