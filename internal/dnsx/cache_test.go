package dnsx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

// clock is a time the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func cachingResolver(t *testing.T, records ...string) (*Resolver, *dnstest.Server, *clock) {
	t.Helper()
	s := dnstest.StartServer(t, dnstest.Zone(t, records...))
	r := New(s.Addr, 2*time.Second)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r.cache.now = c.now
	return r, s, c
}

func mxHost(t *testing.T, r *Resolver, domain string) string {
	t.Helper()
	mxs, err := r.LookupMX(context.Background(), domain)
	if err != nil || len(mxs) != 1 {
		t.Fatalf("LookupMX(%s) = %v, %v", domain, mxs, err)
	}
	return mxs[0].Host
}

// An answer is kept for the smallest TTL of its records, then asked again.
func TestCacheKeepsAnswerForItsTTL(t *testing.T) {
	r, s, clk := cachingResolver(t, "example.org. 300 MX 10 mx1.example.org.", "mx1.example.org. 30 A 192.0.2.1", "mx1.example.org. 90 A 192.0.2.2",
		"example.org. 3600 SOA ns.example.org. host.example.org. 1 3600 600 86400 3600") // no AAAA: kept an hour
	ctx := context.Background()
	if h := mxHost(t, r, "example.org"); h != "mx1.example.org" {
		t.Fatalf("MX %s", h)
	}
	if _, err := r.LookupIP(ctx, "mx1.example.org"); err != nil {
		t.Fatal(err)
	}
	asked := s.Queries() // MX, A, AAAA
	s.Set("example.org.", []dns.RR{dnstest.RR(t, "example.org. 300 MX 10 mx2.example.org.")})
	s.Set("mx1.example.org.", []dns.RR{dnstest.RR(t, "mx1.example.org. 30 A 192.0.2.9")})
	clk.add(29 * time.Second)
	if h := mxHost(t, r, "Example.ORG."); h != "mx1.example.org" {
		t.Errorf("MX within its TTL: %s, want the kept mx1", h)
	}
	ips, err := r.LookupIP(ctx, "mx1.example.org")
	if err != nil || len(ips) != 2 {
		t.Errorf("A within its TTL: %v, %v; want the kept two", ips, err)
	}
	if s.Queries() != asked {
		t.Errorf("%d queries reached the server within the TTL", s.Queries()-asked)
	}
	clk.add(2 * time.Second) // past 30 s, the smaller A TTL
	ips, err = r.LookupIP(ctx, "mx1.example.org")
	if err != nil || len(ips) != 1 || ips[0].String() != "192.0.2.9" {
		t.Errorf("A after its TTL: %v, %v; want the new 192.0.2.9", ips, err)
	}
	if h := mxHost(t, r, "example.org"); h != "mx1.example.org" {
		t.Errorf("MX (TTL 300) after 31 s: %s, want the kept mx1", h)
	}
	clk.add(300 * time.Second)
	if h := mxHost(t, r, "example.org"); h != "mx2.example.org" {
		t.Errorf("MX after its TTL: %s, want mx2", h)
	}
}

// NXDOMAIN and "no such record" are kept for the SOA's negative TTL
// (RFC 2308), and not at all without an SOA.
func TestCacheNegativeAnswers(t *testing.T) {
	r, s, clk := cachingResolver(t,
		"example.org. 3600 SOA ns.example.org. host.example.org. 1 3600 600 86400 60",
		"mx.example.org. A 192.0.2.1",
	)
	ctx := context.Background()
	if _, err := r.LookupMX(ctx, "new.example.org"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MX of a missing name: %v", err)
	}
	if mxs, err := r.LookupMX(ctx, "mx.example.org"); err != nil || len(mxs) != 0 {
		t.Fatalf("MX of a name without: %v, %v", mxs, err)
	}
	s.Set("new.example.org.", []dns.RR{dnstest.RR(t, "new.example.org. MX 10 mx.example.org.")})
	s.Set("mx.example.org.", []dns.RR{dnstest.RR(t, "mx.example.org. A 192.0.2.1"), dnstest.RR(t, "mx.example.org. MX 5 mx.example.org.")})
	clk.add(59 * time.Second)
	if _, err := r.LookupMX(ctx, "new.example.org"); !errors.Is(err, ErrNotFound) {
		t.Errorf("NXDOMAIN within the negative TTL: %v, want the kept ErrNotFound", err)
	}
	if mxs, err := r.LookupMX(ctx, "mx.example.org"); err != nil || len(mxs) != 0 {
		t.Errorf("no MX within the negative TTL: %v, %v; want the kept none", mxs, err)
	}
	clk.add(2 * time.Second)
	if h := mxHost(t, r, "new.example.org"); h != "mx.example.org" {
		t.Errorf("after the negative TTL: %s", h)
	}
	if h := mxHost(t, r, "mx.example.org"); h != "mx.example.org" {
		t.Errorf("after the negative TTL: %s", h)
	}

	// Without an SOA, a negative answer is asked again every time.
	r2, s2, _ := cachingResolver(t, "mx.example.net. A 192.0.2.1")
	for i := 0; i < 3; i++ {
		r2.LookupMX(ctx, "missing.example.net")
	}
	if s2.Queries() != 3 {
		t.Errorf("%d queries for 3 lookups of NXDOMAIN without SOA", s2.Queries())
	}
}

// Failures are not kept, and TXT is not cached at all.
func TestCacheSkipsFailuresAndTXT(t *testing.T) {
	z := dnstest.Zone(t, `example.org. TXT "v=spf1 -all"`)
	z["broken.example"] = append(z["broken.example"], dnstest.ServFail("broken.example"))
	s := dnstest.StartServer(t, z)
	r := New(s.Addr, 2*time.Second)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := r.LookupMX(ctx, "broken.example"); !IsTemporary(err) {
			t.Fatalf("SERVFAIL: %v", err)
		}
	}
	if s.Queries() != 2 {
		t.Errorf("%d queries for 2 lookups of a SERVFAIL name", s.Queries())
	}
	s.Set("broken.example.", []dns.RR{dnstest.RR(t, "broken.example. MX 10 mx.example.org.")})
	if mxs, err := r.LookupMX(ctx, "broken.example"); err != nil || len(mxs) != 1 {
		t.Errorf("after the failure went away: %v, %v", mxs, err)
	}
	for i := 0; i < 2; i++ {
		if txts, err := r.LookupTXT(ctx, "example.org"); err != nil || len(txts) != 1 {
			t.Fatalf("TXT: %v, %v", txts, err)
		}
	}
	if s.Queries() != 5 {
		t.Errorf("%d queries, want 5 (TXT asked each time)", s.Queries())
	}
}

// Lookups of one name at once make one query.
func TestCacheOneQueryForConcurrentLookups(t *testing.T) {
	r, s, _ := cachingResolver(t, "example.org. MX 10 mx.example.org.")
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mxs, err := r.LookupMX(context.Background(), "example.org")
			if err == nil && len(mxs) != 1 {
				err = fmt.Errorf("MX %v", mxs)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.Queries() != 1 {
		t.Errorf("%d queries for 50 concurrent lookups", s.Queries())
	}
}

// A waiting lookup gives up at its own deadline; the one in flight goes on.
func TestCacheWaiterDeadline(t *testing.T) {
	c := newCache(time.Now)
	release := make(chan struct{})
	go c.get(context.Background(), "slow.example", dns.TypeA, func() (*dns.Msg, error) {
		<-release
		return answer("slow.example", 60), nil
	})
	for {
		c.mu.Lock()
		n := len(c.entries)
		c.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.get(ctx, "slow.example", dns.TypeA, func() (*dns.Msg, error) { t.Error("asked twice"); return nil, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter: %v", err)
	}
	close(release)
}

// The cache holds at most maxCacheEntries, expired ones dropped first.
func TestCacheBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c := newCache(clk.now)
	ctx := context.Background()
	for i := 0; i < maxCacheEntries; i++ {
		ttl := uint32(3600)
		if i%2 == 0 {
			ttl = 10
		}
		name := fmt.Sprintf("h%d.example", i)
		c.get(ctx, name, dns.TypeA, func() (*dns.Msg, error) { return answer(name, ttl), nil })
	}
	clk.add(11 * time.Second)
	c.get(ctx, "one-more.example", dns.TypeA, func() (*dns.Msg, error) { return answer("one-more.example", 60), nil })
	if n := len(c.entries); n != maxCacheEntries/2+1 {
		t.Errorf("%d entries after the expired half was dropped", n)
	}
	for i := 0; i < maxCacheEntries; i++ {
		name := fmt.Sprintf("more%d.example", i)
		c.get(ctx, name, dns.TypeA, func() (*dns.Msg, error) { return answer(name, 3600), nil })
		if len(c.entries) > maxCacheEntries {
			t.Fatalf("%d entries", len(c.entries))
		}
	}
}

func answer(name string, ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: []byte{192, 0, 2, 1}})
	return m
}
