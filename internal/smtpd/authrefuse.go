package smtpd

import (
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/postern-mail/postern/internal/auth"
)

// authRefused counts AUTH commands and connections turned away because
// their IP is in its cool-down after too many failed logins.
var authRefused = promauto.NewCounter(prometheus.CounterOpts{
	Name: "postern_smtp_auth_refused_total",
	Help: "SMTP AUTH commands and submission connections refused because the client IP is in its cool-down after too many failed logins.",
})

// refuseListener turns away, on the submission listeners, connections
// from an IP in its cool-down after too many failed logins (on any
// protocol): "421 4.7.0" and close (RFC 5321 3.8), like mox. It sits above
// the TLS layer on port 465, so that the client reads the reply inside
// TLS rather than plaintext where it expects a handshake.
type refuseListener struct {
	net.Listener
	hostname string
	throttle *auth.Throttle
}

func (l *refuseListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.throttle.Refused(remoteIP(c.RemoteAddr())) {
			return c, nil
		}
		authRefused.Inc()
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second)) // a TLS handshake included
			fmt.Fprintf(c, "421 4.7.0 %s Too many failed logins from your address, try again later\r\n", l.hostname)
		}()
	}
}

// refuseAuthFailures wraps l in a refuseListener on a submission server
// with a throttle; other servers get l back.
func (s *Server) refuseAuthFailures(l net.Listener) net.Listener {
	if !s.cfg.Submission || s.cfg.Throttle == nil {
		return l
	}
	return &refuseListener{Listener: l, hostname: s.cfg.Hostname, throttle: s.cfg.Throttle}
}
