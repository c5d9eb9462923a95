// Package dnstest runs a small authoritative-and-recursive-looking DNS server
// on loopback for tests: it answers from a zone given as a map, follows
// CNAMEs inside that zone as a recursive resolver would, answers NXDOMAIN for
// names it does not know and SERVFAIL for names marked with ServFail. A
// negative answer (NXDOMAIN, or no record of the type asked) carries the SOA
// of the nearest enclosing name that has one in the zone, as its negative
// TTL (RFC 2308).
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// servFailText marks a name whose queries get SERVFAIL (see ServFail).
const servFailText = "dnstest:servfail"

// ServFail returns a marker record: a name that has it in the zone is
// answered with SERVFAIL for every query type.
func ServFail(name string) dns.RR {
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET},
		Txt: []string{servFailText},
	}
}

// RR parses one record in zone-file syntax, failing the test on error.
func RR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil || rr == nil {
		t.Fatalf("dnstest: bad record %q: %v", s, err)
	}
	return rr
}

// Zone builds a zone from records in zone-file syntax, e.g.
// "example.org. MX 10 mx.example.org." and "mx.example.org. A 127.0.0.1".
func Zone(t testing.TB, records ...string) map[string][]dns.RR {
	t.Helper()
	z := make(map[string][]dns.RR)
	for _, s := range records {
		rr := RR(t, s)
		k := key(rr.Header().Name)
		z[k] = append(z[k], rr)
	}
	return z
}

// Server is a running test DNS server.
type Server struct {
	Addr string // "127.0.0.1:port", the same port for UDP and TCP

	mu            sync.Mutex
	zone          map[string][]dns.RR
	noFollowCNAME bool
	queries       int
}

// Start serves zone (keyed by name, any case, with or without the trailing
// dot) on UDP and TCP at 127.0.0.1 and returns the address; the server stops
// when the test ends.
func Start(t testing.TB, zone map[string][]dns.RR) string {
	return StartServer(t, zone).Addr
}

// StartServer is Start returning the Server, whose zone can then be changed.
func StartServer(t testing.TB, zone map[string][]dns.RR) *Server {
	t.Helper()
	s := &Server{zone: make(map[string][]dns.RR)}
	for name, rrs := range zone {
		s.zone[key(name)] = append(s.zone[key(name)], rrs...)
	}
	// Bind TCP first, then UDP on the same port (retrying if it is taken).
	var tl net.Listener
	var pc net.PacketConn
	for i := 0; ; i++ {
		var err error
		tl, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		pc, err = net.ListenPacket("udp", tl.Addr().String())
		if err == nil {
			break
		}
		tl.Close()
		if i == 20 {
			t.Fatalf("dnstest: %v", err)
		}
	}
	s.Addr = tl.Addr().String()
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: tl, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// Set replaces the records of name (nil removes it, so it becomes NXDOMAIN).
func (s *Server) Set(name string, rrs []dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rrs == nil {
		delete(s.zone, key(name))
		return
	}
	s.zone[key(name)] = rrs
}

// NoFollowCNAME makes the server answer with the CNAME alone, leaving the
// target to the client, as some resolvers do.
func (s *Server) NoFollowCNAME(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noFollowCNAME = v
}

// Queries returns how many queries the server has answered.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := key(q.Name)
	for hops := 0; hops < 16; hops++ {
		rrs, ok := s.zone[name]
		if !ok {
			if hops == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			break
		}
		if isServFail(rrs) {
			resp.Rcode = dns.RcodeServerFailure
			resp.Answer = nil
			break
		}
		next := ""
		for _, rr := range rrs {
			h := rr.Header()
			if h.Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				resp.Answer = append(resp.Answer, withName(rr, name))
			} else if h.Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME {
				resp.Answer = append(resp.Answer, withName(rr, name))
				next = key(rr.(*dns.CNAME).Target)
			}
		}
		if next == "" || s.noFollowCNAME {
			break
		}
		name = next
	}
	if len(resp.Answer) == 0 && (resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError) {
		if soa := s.soaFor(key(q.Name)); soa != nil {
			resp.Ns = append(resp.Ns, soa)
		}
	}
	if w.RemoteAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size) // sets TC: the client asks again over TCP
	}
	w.WriteMsg(resp)
}

// soaFor returns the SOA of name or of its nearest parent that has one (s.mu held).
func (s *Server) soaFor(name string) dns.RR {
	for n := name; ; {
		for _, rr := range s.zone[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return withName(rr, n)
			}
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			return nil
		}
		n = n[i+1:]
	}
}

func isServFail(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok && len(t.Txt) == 1 && t.Txt[0] == servFailText {
			return true
		}
	}
	return false
}

// withName returns a copy of rr owned by name (zones may be keyed loosely).
func withName(rr dns.RR, name string) dns.RR {
	c := dns.Copy(rr)
	c.Header().Name = name
	if c.Header().Class == 0 {
		c.Header().Class = dns.ClassINET
	}
	if c.Header().Ttl == 0 {
		c.Header().Ttl = 60
	}
	return c
}

func key(name string) string {
	return dns.Fqdn(strings.ToLower(name))
}
