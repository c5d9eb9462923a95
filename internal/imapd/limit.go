package imapd

import (
	"net"
	"sync"
	"time"

	"github.com/postern-mail/postern/internal/coalesce"
	"github.com/postern-mail/postern/internal/connlimit"
)

// connLimiter bounds connections in all and per client IP. A connection
// over a limit gets "* BYE" and is closed at once (RFC 9051 7.1.5).
type connLimiter struct{ *connlimit.Counter }

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{connlimit.New(max, perIP)}
}

// wrap limits l; bye says whether a refused client gets "* BYE" (not on
// an implicit-TLS listener, where plaintext would only confuse the client).
// With idle > 0, no read waits longer than idle.
func (c *connLimiter) wrap(l net.Listener, bye bool, idle time.Duration) net.Listener {
	return &limitListener{Listener: l, c: c, bye: bye, idle: idle}
}

type limitListener struct {
	net.Listener
	c    *connLimiter
	bye  bool
	idle time.Duration
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := connlimit.RemoteIP(conn.RemoteAddr())
		if l.c.Acquire(ip) != connlimit.OK {
			if l.bye {
				conn.Write([]byte("* BYE Too many connections, try again later\r\n"))
			}
			conn.Close()
			continue
		}
		return &limitConn{Conn: coalesce.New(conn), idle: l.idle, release: func() { l.c.Release(ip) }}, nil
	}
}

type limitConn struct {
	net.Conn
	idle    time.Duration
	once    sync.Once
	release func()
}

// SetReadDeadline shortens go-imap's fixed waits (35 minutes between
// commands and in IDLE) to the configured idle timeout.
func (c *limitConn) SetReadDeadline(t time.Time) error {
	if c.idle > 0 && !t.IsZero() {
		if limit := time.Now().Add(c.idle); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline applies SetReadDeadline's limit to reads.
func (c *limitConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
