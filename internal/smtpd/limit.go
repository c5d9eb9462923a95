package smtpd

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-mail/postern/internal/coalesce"
	"github.com/postern-mail/postern/internal/connlimit"
)

// limitListener refuses connections beyond a total and a per-IP limit with
// "421 4.7.0" (RFC 5321 3.8) before the session starts.
type limitListener struct {
	net.Listener
	hostname string
	conns    *connlimit.Counter
	// blocked reports IPs refused for a while (address harvesting).
	blocked func(ip string) bool
}

func newLimitListener(l net.Listener, hostname string, maxTotal, maxPerIP int) *limitListener {
	return &limitListener{Listener: l, hostname: hostname, conns: connlimit.New(maxTotal, maxPerIP)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		connectionsTotal.Inc()
		ip := remoteIP(c.RemoteAddr())
		reason := ""
		switch l.conns.Acquire(ip) {
		case connlimit.TooMany:
			reason = reasonTooManyConns
		case connlimit.TooManyFromIP:
			reason = reasonTooManyPerIP
		default:
			if l.blocked != nil && l.blocked(ip) {
				l.conns.Release(ip)
				reason = reasonProbing
			}
		}
		if reason != "" {
			messagesRejected.WithLabelValues(reason).Inc()
			go l.refuse(c, reason)
			continue
		}
		connectionsActive.Inc()
		return &limitedConn{Conn: coalesce.New(c), release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) refuse(c net.Conn, reason string) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	msg := "Too many connections, try again later"
	switch reason {
	case reasonTooManyPerIP:
		msg = "Too many connections from your address, try again later"
	case reasonProbing:
		msg = "Too many unknown recipients from your address, try again later"
	}
	fmt.Fprintf(c, "421 4.7.0 %s %s\r\n", l.hostname, msg)
}

func (l *limitListener) release(ip string) {
	connectionsActive.Dec()
	l.conns.Release(ip)
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
	noRead  atomic.Bool
	// idle, while above zero, is an idle timeout in nanoseconds: each
	// read first moves the read deadline that far ahead.
	idle atomic.Int64
}

// Read reads from the connection until stopReading.
func (c *limitedConn) Read(p []byte) (int, error) {
	if c.noRead.Load() {
		return 0, io.EOF
	}
	if d := c.idle.Load(); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
	}
	return c.Conn.Read(p)
}

// limitedConnOf returns the limitedConn under c, which may be the TLS
// connection over it; nil if there is none.
func limitedConnOf(c net.Conn) *limitedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*limitedConn)
	return lc
}

// stopReading makes every later read of the client's connection (c or the
// TLS connection over it) report EOF: the reply already queued is still
// written, then go-smtp sees EOF and closes the connection, and nothing the
// client sends afterwards is read as a command.
func stopReading(c net.Conn) {
	if lc := limitedConnOf(c); lc != nil {
		lc.noRead.Store(true)
	}
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// remoteIP is the client's IP without the port.
func remoteIP(a net.Addr) string { return connlimit.RemoteIP(a) }
