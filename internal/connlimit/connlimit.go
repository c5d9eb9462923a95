// Package connlimit counts open connections in all and per client IP, for
// every listener that bounds them (SMTP, IMAP, POP3).
package connlimit

import (
	"net"
	"sync"
)

// Verdict says whether a connection may be taken, and which limit refused it.
type Verdict int

// Verdicts of Acquire.
const (
	OK            Verdict = iota
	TooMany               // the total limit
	TooManyFromIP         // the per-IP limit
)

// Counter bounds connections; a limit of 0 or less is no limit.
type Counter struct {
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[string]int
}

// New returns a Counter allowing max connections, perIP from one address.
func New(max, perIP int) *Counter {
	return &Counter{max: max, perIP: perIP, byIP: map[string]int{}}
}

// Acquire counts a connection from ip if the limits allow it; an OK
// connection must be given back with Release.
func (c *Counter) Acquire(ip string) Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.max > 0 && c.total >= c.max:
		return TooMany
	case c.perIP > 0 && c.byIP[ip] >= c.perIP:
		return TooManyFromIP
	}
	c.total++
	c.byIP[ip]++
	return OK
}

// Release gives back a connection Acquire counted.
func (c *Counter) Release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byIP[ip]--; c.byIP[ip] <= 0 {
		delete(c.byIP, ip)
	}
}

// RemoteIP returns the IP of a client address, without the port.
func RemoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
