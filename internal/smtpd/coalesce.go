package smtpd

import (
	"net"
	"time"

	"github.com/postern-mail/postern/internal/coalesce"
)

// flushOutput writes what c's coalescer holds now (see package coalesce).
func flushOutput(c net.Conn) {
	if lc := limitedConnOf(c); lc != nil {
		if co, ok := lc.Conn.(*coalesce.Conn); ok {
			co.Flush()
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
