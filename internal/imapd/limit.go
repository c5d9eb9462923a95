package imapd

import (
	"net"
	"sync"
)

// connLimiter bounds connections in all and per client IP. A connection
// over a limit gets "* BYE" and is closed at once (RFC 9051 7.1.5).
type connLimiter struct {
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[string]int
}

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, byIP: map[string]int{}}
}

// wrap limits l; bye says whether a refused client gets "* BYE" (not on
// an implicit-TLS listener, where plaintext would only confuse the client).
func (c *connLimiter) wrap(l net.Listener, bye bool) net.Listener {
	return &limitListener{Listener: l, c: c, bye: bye}
}

func (c *connLimiter) acquire(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.max > 0 && c.total >= c.max) || (c.perIP > 0 && c.byIP[ip] >= c.perIP) {
		return false
	}
	c.total++
	c.byIP[ip]++
	return true
}

func (c *connLimiter) release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byIP[ip]--; c.byIP[ip] <= 0 {
		delete(c.byIP, ip)
	}
}

type limitListener struct {
	net.Listener
	c   *connLimiter
	bye bool
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(conn.RemoteAddr())
		if !l.c.acquire(ip) {
			if l.bye {
				conn.Write([]byte("* BYE Too many connections, try again later\r\n"))
			}
			conn.Close()
			continue
		}
		return &limitConn{Conn: conn, release: func() { l.c.release(ip) }}, nil
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
