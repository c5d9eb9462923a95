package auth

import (
	"sync"
	"time"
)

// Throttle counts failed logins per client IP and per account, for every
// protocol that logs users in (IMAP now, SMTP AUTH and POP3 later), and
// says when to stop checking passwords: after MaxPerIP failures from one
// IP or MaxPerUser failures for one account within Window. While refused,
// a login is answered exactly as a wrong password, so a guesser learns
// nothing, and the argon2id cost is not paid.
//
// Before that, from DelayAfter failures of the IP or the account within
// Window, every further attempt waits a growing Delay before its answer
// (right password or not, so that a guesser cannot hang up early on a
// slow answer and take it for a failure).
type Throttle struct {
	MaxPerIP   int
	MaxPerUser int
	Window     time.Duration
	Now        func() time.Time // for tests; nil: time.Now

	// DelayAfter failures (per IP or per account; 0: no delay), each
	// further attempt waits DelayStep times the failures past DelayAfter
	// plus one, at most MaxDelay (0: no cap).
	DelayAfter int
	DelayStep  time.Duration
	MaxDelay   time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
}

// maxKeys bounds the memory a flood of distinct IPs or names can take.
const maxKeys = 100000

// NewThrottle returns a throttle with safe defaults: 10 failures per IP and
// 20 per account in 15 minutes; from 5 failures, attempts wait 1s more for
// each failure (1s, 2s, ... up to 15s).
func NewThrottle() *Throttle {
	return &Throttle{MaxPerIP: 10, MaxPerUser: 20, Window: 15 * time.Minute,
		DelayAfter: 5, DelayStep: time.Second, MaxDelay: 15 * time.Second}
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// recent returns the failures of key still inside the window (t.mu held).
func (t *Throttle) recent(key string, now time.Time) []time.Time {
	l := t.failures[key]
	i := 0
	for i < len(l) && now.Sub(l[i]) > t.Window {
		i++
	}
	if i == len(l) {
		delete(t.failures, key)
		return nil
	}
	if i > 0 {
		l = l[i:]
		t.failures[key] = l
	}
	return l
}

// Allowed reports whether a login from ip for user may be checked.
func (t *Throttle) Allowed(ip, user string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	return len(t.recent("ip:"+ip, now)) < t.MaxPerIP && len(t.recent("user:"+user, now)) < t.MaxPerUser
}

// Delay is how long to wait before answering a login attempt from ip for
// user, given the failures recorded so far: 0 below DelayAfter failures of
// both the IP and the account, then DelayStep, 2*DelayStep, ... (capped at
// MaxDelay). Callers wait it whatever the outcome of the attempt.
func (t *Throttle) Delay(ip, user string) time.Duration {
	if t.DelayAfter <= 0 || t.DelayStep <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	n := max(len(t.recent("ip:"+ip, now)), len(t.recent("user:"+user, now)))
	if n < t.DelayAfter {
		return 0
	}
	excess := n - t.DelayAfter + 1
	if t.MaxDelay > 0 && excess > int(t.MaxDelay/t.DelayStep) {
		return t.MaxDelay
	}
	return time.Duration(excess) * t.DelayStep
}

// Failed records a failed login.
func (t *Throttle) Failed(ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failures == nil {
		t.failures = map[string][]time.Time{}
	}
	now := t.now()
	if len(t.failures) >= maxKeys {
		for k := range t.failures {
			t.recent(k, now)
		}
		if len(t.failures) >= maxKeys {
			return // under a flood, stop recording rather than grow
		}
	}
	for _, k := range []string{"ip:" + ip, "user:" + user} {
		t.failures[k] = append(t.recent(k, now), now)
	}
}

// Succeeded forgets the account's failures (not the IP's).
func (t *Throttle) Succeeded(ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, "user:"+user)
}
