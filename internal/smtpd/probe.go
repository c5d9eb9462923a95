package smtpd

import (
	"sync"
	"time"
)

// probeGuard counts unknown recipients per client IP to stop address
// harvesting (RCPT TO enumeration): more than maxPerIP in window puts the
// IP in a cool-down, during which its connections get 421 at once.
type probeGuard struct {
	maxPerIP int
	window   time.Duration
	cooldown time.Duration
	now      func() time.Time

	mu      sync.Mutex
	unknown map[string][]time.Time
	until   map[string]time.Time
}

// maxProbeKeys bounds the memory a flood of distinct addresses can take.
const maxProbeKeys = 100000

func newProbeGuard(maxPerIP int, window, cooldown time.Duration) *probeGuard {
	return &probeGuard{maxPerIP: maxPerIP, window: window, cooldown: cooldown, now: time.Now,
		unknown: map[string][]time.Time{}, until: map[string]time.Time{}}
}

// blocked reports whether ip is cooling down.
func (g *probeGuard) blocked(ip string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	u, ok := g.until[ip]
	if !ok {
		return false
	}
	if g.now().After(u) {
		delete(g.until, ip)
		return false
	}
	return true
}

// record notes an unknown recipient from ip and reports whether the IP is
// now cooling down.
func (g *probeGuard) record(ip string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if len(g.unknown) >= maxProbeKeys {
		g.unknown = map[string][]time.Time{}
	}
	ts := g.unknown[ip]
	keep := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < g.window {
			keep = append(keep, t)
		}
	}
	keep = append(keep, now)
	g.unknown[ip] = keep
	if len(keep) > g.maxPerIP {
		if len(g.until) >= maxProbeKeys {
			g.until = map[string]time.Time{}
		}
		g.until[ip] = now.Add(g.cooldown)
		delete(g.unknown, ip)
		return true
	}
	return false
}
