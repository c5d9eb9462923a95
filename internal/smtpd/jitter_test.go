package smtpd_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
)

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestRcptTimingHidesUsers: with rcpt_jitter, the median RCPT reply time of
// known and unknown recipients differs by less than the jitter bound, and
// the jitter is really waited.
func TestRcptTimingHidesUsers(t *testing.T) {
	const jitter = 5 * time.Millisecond // rcpt_jitter defaults to 2ms; 5ms keeps this test far from its bound under load
	ts := newTestServer(t, func(c *smtpd.Config) { c.RcptJitter = jitter })
	c := ts.dial()
	c.ehlo("client.example.net")
	c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
	known := []string{"alice@example.org", "bob@example.org", "carol@example.org", "team@example.org"}
	var tk, tu []time.Duration
	for i := 0; i < 60; i++ {
		// Interleaved, so that load changes hit both alike.
		tk = append(tk, timed(c, known[i%len(known)], 250, "2.0.0"))
		tu = append(tu, timed(c, fmt.Sprintf("guess%d@example.org", i), 550, "5.1.1"))
		if i%20 == 19 { // stay under max_recipients
			c.expect("RSET", 250, "2.0.0")
			c.expect("MAIL FROM:<sender@example.net>", 250, "2.0.0")
		}
	}
	mk, mu := median(tk), median(tu)
	t.Logf("median RCPT reply: known %v, unknown %v", mk, mu)
	if diff := max(mk-mu, mu-mk); diff >= jitter {
		t.Errorf("median reply times differ by %v (known %v, unknown %v), want less than the %v jitter", diff, mk, mu, jitter)
	}
	// Uniform in [0, 5ms): the median wait is about 2.5ms; sleeps never end early.
	if min(mk, mu) < jitter/4 {
		t.Errorf("median reply %v: the jitter is not waited", min(mk, mu))
	}
}
