package dnsx

import (
	"context"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Cache bounds. Mail to one destination resolves the same MX and address
// records again and again; without a cache every delivery pays a round trip
// to the DNS server.
const (
	maxCacheEntries = 4096
	maxCacheTTL     = time.Hour // a longer TTL is cut to this
)

// cached reports whether answers to qtype are kept: those that route mail.
// TXT (SPF, DKIM, DMARC) is always asked afresh.
func cached(qtype uint16) bool {
	return qtype == dns.TypeMX || qtype == dns.TypeA || qtype == dns.TypeAAAA
}

// cache keeps responses of the configured DNS server as long as their TTL
// says: an answer for the smallest TTL of its records; NXDOMAIN and "no
// records of this type" for the negative TTL of the SOA in the authority
// section (RFC 2308 5: without an SOA they are not kept). Failures (SERVFAIL,
// timeouts) are never kept. Queries for one name and type made while one is
// in flight wait for it and share its outcome. Responses are shared: callers
// must not modify them. When full, expired entries go first, then any.
type cache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
}

type cacheKey struct {
	name  string // normalized
	qtype uint16
}

type cacheEntry struct {
	done    chan struct{} // closed when resp and err are set
	resp    *dns.Msg
	err     error
	expires time.Time
}

func newCache(now func() time.Time) *cache {
	return &cache{now: now, entries: map[cacheKey]*cacheEntry{}}
}

// get returns the response for name and qtype from the cache or, failing
// that, from exchange (called once for all the queries waiting on it).
func (c *cache) get(ctx context.Context, name string, qtype uint16, exchange func() (*dns.Msg, error)) (*dns.Msg, error) {
	k := cacheKey{name, qtype}
	c.mu.Lock()
	if e := c.entries[k]; e != nil {
		select {
		case <-e.done:
			if c.now().Before(e.expires) {
				c.mu.Unlock()
				cacheLookups.WithLabelValues("hit").Inc()
				return e.resp, nil
			}
			delete(c.entries, k)
		default:
			c.mu.Unlock()
			cacheLookups.WithLabelValues("shared").Inc()
			select {
			case <-e.done:
				return e.resp, e.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	if len(c.entries) >= maxCacheEntries {
		c.evict()
	}
	e := &cacheEntry{done: make(chan struct{})}
	c.entries[k] = e
	c.mu.Unlock()
	cacheLookups.WithLabelValues("miss").Inc()

	resp, err := exchange()
	ttl := time.Duration(0)
	if err == nil {
		ttl = min(responseTTL(resp), maxCacheTTL)
	}
	c.mu.Lock()
	e.resp, e.err = resp, err
	if ttl > 0 {
		e.expires = c.now().Add(ttl)
	} else if c.entries[k] == e {
		delete(c.entries, k)
	}
	close(e.done)
	c.mu.Unlock()
	return resp, err
}

// evict makes room (c.mu held): it drops the expired entries or, if none
// has expired, an eighth of the finished ones, whichever Go's map order
// gives first.
func (c *cache) evict() {
	now := c.now()
	var finished []cacheKey
	dropped := 0
	for k, e := range c.entries {
		select {
		case <-e.done:
		default:
			continue // in flight: its waiters need it
		}
		if !now.Before(e.expires) {
			delete(c.entries, k)
			dropped++
		} else {
			finished = append(finished, k)
		}
	}
	if dropped > 0 {
		return
	}
	for _, k := range finished[:min(len(finished), max(1, maxCacheEntries/8))] {
		delete(c.entries, k)
	}
}

// responseTTL is how long resp may be kept: the smallest TTL of the answer
// records, or for NXDOMAIN and an empty answer the negative TTL (RFC 2308
// 5: the smaller of the SOA's TTL and its MINIMUM field); 0: not at all.
func responseTTL(resp *dns.Msg) time.Duration {
	switch {
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		ttl := resp.Answer[0].Header().Ttl
		for _, rr := range resp.Answer[1:] {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return time.Duration(ttl) * time.Second
	case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			}
		}
	}
	return 0
}
