package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Throttle counts failed logins per client IP and per account, shared by
// every protocol that logs users in (SMTP AUTH, IMAP, POP3), so that a
// guesser gains nothing by switching protocols.
//
//   - From DelayAfter failures of the IP or of the account within Window,
//     every further attempt waits a growing Delay before its answer (right
//     password or not, so that a guesser cannot hang up early on a slow
//     answer and take it for a failure).
//   - At MaxPerIP failures of one IP within Window, that IP is refused for
//     Cooldown: Refused reports it, and the protocols turn its connections
//     and logins away without checking a password. Its failures are then
//     forgotten, so that after the cool-down it starts afresh.
//
// Logins from one IP run one at a time (Acquire).
//
// The per-account count only ever delays, it never refuses: refusing an
// account would let anyone who knows an address lock its owner out from
// everywhere, and guessing one account from many IPs is already bounded
// by each IP's refusal (Dovecot's auth penalty and mox's failed-auth
// limiter are likewise per IP).
type Throttle struct {
	// MaxPerIP failures of one IP within Window refuse it for Cooldown
	// (0: never refuse).
	MaxPerIP int
	Window   time.Duration
	Cooldown time.Duration
	Now      func() time.Time // for tests; nil: time.Now

	// DelayAfter failures (per IP or per account; 0: no delay), each
	// further attempt waits DelayStep times the failures past DelayAfter
	// plus one, at most MaxDelay (0: no cap).
	DelayAfter int
	DelayStep  time.Duration
	MaxDelay   time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
	refused  map[string]time.Time // IP: end of its cool-down
	retries  map[string][]retry   // IP: its last failed user and password pairs
	key      [32]byte             // for the retries' keyed hashes
	logins   map[string]*ipLogin  // IP: its login in progress and those waiting
}

// ipLogin lets one login of an IP proceed at a time.
type ipLogin struct {
	sync.Mutex
	holders int // the login in progress and those waiting
}

// Acquire waits until no other login from ip (its /64 for IPv6) is in
// progress, and returns the function that ends this one (it may be called
// more than once). Callers hold it from the Refused check to the end of
// their wait, so that logins of one IP run one after another: parallel
// connections cannot slip more than MaxPerIP guesses in before the
// refusal, nor run the growing delays side by side, and one IP costs at
// most one argon2id computation (and its memory) at a time.
func (t *Throttle) Acquire(ip string) (release func()) {
	key := clientKey(ip)
	t.mu.Lock()
	if t.logins == nil {
		t.logins = map[string]*ipLogin{}
	}
	l := t.logins[key]
	if l == nil {
		l = &ipLogin{}
		t.logins[key] = l
	}
	l.holders++
	t.mu.Unlock()
	l.Lock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.Unlock()
			t.mu.Lock()
			if l.holders--; l.holders == 0 {
				delete(t.logins, key)
			}
			t.mu.Unlock()
		})
	}
}

// retry is a failed user and password pair, as a keyed hash.
type retry struct {
	sum [32]byte
	at  time.Time
}

// maxRetries is how many failed pairs are remembered per IP (Dovecot's
// auth penalty remembers 10).
const maxRetries = 10

// clientKey is what an IP is counted as: an IPv6 address by its /64, the
// block one client usually holds (a guesser would otherwise take a new
// address for every few guesses), like mox's smallest IPv6 step; Dovecot
// masks IPv6 to /48.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// maxKeys bounds the memory a flood of distinct IPs or names can take.
const maxKeys = 100000

// NewThrottle returns a throttle with the defaults of the [limits] auth_*
// keys: from 5 failures attempts wait 1s more for each failure (1s, 2s,
// ... up to 15s); 20 failures from one IP in 15 minutes refuse it for 15
// minutes.
func NewThrottle() *Throttle {
	return &Throttle{MaxPerIP: 20, Window: 15 * time.Minute, Cooldown: 15 * time.Minute,
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

// Refused reports whether ip is in its cool-down: its connections and
// logins are turned away, whatever the account or password.
func (t *Throttle) Refused(ip string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refusedLocked(clientKey(ip), t.now())
}

func (t *Throttle) refusedLocked(ip string, now time.Time) bool {
	until, ok := t.refused[ip]
	if ok && !now.Before(until) {
		delete(t.refused, ip)
		return false
	}
	return ok
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
	n := max(len(t.recent("ip:"+clientKey(ip), now)), len(t.recent("user:"+user, now)))
	if n < t.DelayAfter {
		return 0
	}
	excess := n - t.DelayAfter + 1
	if t.MaxDelay > 0 && excess > int(t.MaxDelay/t.DelayStep) {
		return t.MaxDelay
	}
	return time.Duration(excess) * t.DelayStep
}

// FailWait is how long to wait before answering a failed login that
// Failed has recorded: base (the fixed delay on every failure, [limits]
// auth_fail_delay) plus up to half of it again at random, plus the
// growing Delay.
func (t *Throttle) FailWait(base time.Duration, ip, user string) time.Duration {
	if base > 0 {
		base += mrand.N(base/2 + 1)
	}
	return base + t.Delay(ip, user)
}

// Failed records a failed login, and reports whether it made the IP
// reach MaxPerIP, starting its cool-down. A retry of one of the IP's last
// failed user and password pairs within Window is not counted again, as
// in Dovecot's auth penalty: a client left with an old password, retrying
// on every poll and connection, must not get its IP (and everyone behind
// it) refused, and a guesser gains nothing by repeating a guess.
func (t *Throttle) Failed(ip, user, password string) (refused bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failures == nil {
		t.failures = map[string][]time.Time{}
		t.refused = map[string]time.Time{}
		t.retries = map[string][]retry{}
		if _, err := rand.Read(t.key[:]); err != nil {
			panic(err)
		}
	}
	now := t.now()
	if len(t.failures) >= maxKeys || len(t.refused) >= maxKeys || len(t.retries) >= maxKeys {
		for k := range t.failures {
			t.recent(k, now)
		}
		for k := range t.refused {
			t.refusedLocked(k, now)
		}
		for k := range t.retries {
			t.recentRetries(k, now)
		}
		if len(t.failures) >= maxKeys || len(t.refused) >= maxKeys || len(t.retries) >= maxKeys {
			return false // under a flood, stop recording rather than grow
		}
	}
	ip = clientKey(ip)
	mac := hmac.New(sha256.New, t.key[:])
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var sum [32]byte
	copy(sum[:], mac.Sum(nil))
	rs := t.recentRetries(ip, now)
	for i, r := range rs {
		if hmac.Equal(r.sum[:], sum[:]) {
			rs[i].at = now
			return false
		}
	}
	if len(rs) >= maxRetries {
		rs = rs[1:]
	}
	t.retries[ip] = append(rs, retry{sum: sum, at: now})
	for _, k := range []string{"ip:" + ip, "user:" + user} {
		t.failures[k] = append(t.recent(k, now), now)
	}
	if t.MaxPerIP > 0 && len(t.failures["ip:"+ip]) >= t.MaxPerIP && !t.refusedLocked(ip, now) {
		t.refused[ip] = now.Add(t.Cooldown)
		delete(t.failures, "ip:"+ip)
		delete(t.retries, ip)
		return true
	}
	return false
}

// recentRetries returns the IP's remembered pairs still inside the window
// (t.mu held).
func (t *Throttle) recentRetries(ip string, now time.Time) []retry {
	rs := t.retries[ip]
	kept := rs[:0]
	for _, r := range rs {
		if now.Sub(r.at) <= t.Window {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 {
		delete(t.retries, ip)
		return nil
	}
	t.retries[ip] = kept
	return kept
}

// Succeeded forgets the account's failures (not the IP's: one account of
// its own must not let a guesser reset its IP's count).
func (t *Throttle) Succeeded(ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, "user:"+user)
}
