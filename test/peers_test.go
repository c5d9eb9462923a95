package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

// A peer is one Postern instance hosting one domain on its own loopback
// address (127.0.0.2, 127.0.0.3, ...). Every peer of a test listens for SMTP
// on the same port, because [delivery] mx_port is one port for all remote
// hosts, and resolves through the same in-process DNS server, which maps
// each domain's MX to its peer's address.
type peer struct {
	*server
	domain   string
	ip       string
	mxHost   string // "mx." + domain, the hostname
	subPort  int    // submission, STARTTLS
	subsPort int    // submissions, implicit TLS
	mxPort   int
	resolver string
	queue    string // the [queue] table's lines
}

// mxZone returns the DNS records that route each domain (key) to an
// address (value): "D. MX 10 mx.D." and "mx.D. A IP".
func mxZone(t *testing.T, routes map[string]string, extra ...string) *dnstest.Server {
	t.Helper()
	var rrs []string
	for d, ip := range routes {
		rrs = append(rrs, fmt.Sprintf("%s. 60 IN MX 10 mx.%s.", d, d), fmt.Sprintf("mx.%s. 60 IN A %s", d, ip))
	}
	return dnstest.StartServer(t, dnstest.Zone(t, append(rrs, extra...)...))
}

// commonPort returns a TCP port that was free a moment ago on every one of
// the addresses.
func commonPort(t testing.TB, ips ...string) int {
	t.Helper()
	for try := 0; try < 100; try++ {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatalf("listening on %s: %v", ips[0], err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		ls := []net.Listener{l}
		for _, ip := range ips[1:] {
			o, err := net.Listen("tcp", net.JoinHostPort(ip, itoa(port)))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, o)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return 0
}

// portOn returns a port free on ip a moment ago.
func portOn(t testing.TB, ip string) int { return commonPort(t, ip) }

// newPeer prepares (does not start) a Postern for domain on ip, with SMTP
// on mxPort, submission and submissions on free ports, the given resolver
// and [queue] lines, and the users (local parts; password "secret-" +
// address).
func newPeer(t *testing.T, domain, ip string, mxPort int, resolver, queue string, users ...string) *peer {
	t.Helper()
	p := &peer{server: newServer(t, ""), domain: domain, ip: ip, mxHost: "mx." + domain,
		mxPort: mxPort, resolver: resolver, queue: queue, subPort: portOn(t, ip), subsPort: portOn(t, ip)}
	p.smtpPort = mxPort
	p.render = p.configText
	p.writeConfig()
	p.addDomain(domain)
	for _, u := range users {
		p.addUser(u + "@" + domain)
	}
	return p
}

func (p *peer) configText() string {
	return fmt.Sprintf(`hostname = %q
data_dir = "data"

[listen]
smtp = ["%s:%d"]
submission = ["%[2]s:%[4]d"]
submissions = ["%[2]s:%[5]d"]
imap = []
imaps = []
pop3 = []
pop3s = []
admin = []

[dns]
resolver = %[6]q

[delivery]
mx_port = %[3]d

[queue]
%[7]s

[limits]
shutdown_grace = "3s"
command_timeout = "30s"
data_timeout = "30s"
auth_fail_delay = "0s"
`, p.mxHost, p.ip, p.mxPort, p.subPort, p.subsPort, p.resolver, p.queue)
}

// start starts the peer and checks that all three SMTP listeners are up.
func (p *peer) start() {
	p.t.Helper()
	p.server.start()
	out := p.stdout.String()
	for _, l := range []string{
		fmt.Sprintf("submission listening on %s:%d", p.ip, p.subPort),
		fmt.Sprintf("submissions listening on %s:%d", p.ip, p.subsPort),
	} {
		if !strings.Contains(out, l) {
			p.t.Fatalf("%s: no %q in the server's output:\n%s", p.domain, l, out)
		}
	}
}

func (p *peer) password(addr string) string { return "secret-" + addr }

// peerPair is the usual setup: a.test on 127.0.0.2 with users alice and
// carol, b.test on 127.0.0.3 with bob, carol and dave, both started.
type peerPair struct {
	a, b *peer
	dns  *dnstest.Server
}

// startPair starts a.test and b.test with the given [queue] lines.
func startPair(t *testing.T, queue string) peerPair {
	t.Helper()
	dns := mxZone(t, map[string]string{"a.test": "127.0.0.2", "b.test": "127.0.0.3"})
	return startPairWith(t, queue, dns, commonPort(t, "127.0.0.2", "127.0.0.3"))
}

// startPairWith is startPair with a given DNS server and SMTP port.
func startPairWith(t *testing.T, queue string, dns *dnstest.Server, port int) peerPair {
	t.Helper()
	a := newPeer(t, "a.test", "127.0.0.2", port, dns.Addr, queue, "alice", "carol")
	b := newPeer(t, "b.test", "127.0.0.3", port, dns.Addr, queue, "bob", "carol", "dave")
	a.start()
	b.start()
	// a.test first: it closes its idle connections to b.test, which then
	// need not wait out its shutdown grace for them.
	t.Cleanup(func() {
		for _, p := range []*peer{a, b} {
			if p.running() {
				p.server.stop()
			}
		}
	})
	return peerPair{a: a, b: b, dns: dns}
}

// in makes the pair's helpers report to t (a subtest) until it ends.
func (pp peerPair) in(t *testing.T) {
	ta, tb := pp.a.t, pp.b.t
	pp.a.t, pp.b.t = t, t
	t.Cleanup(func() { pp.a.t, pp.b.t = ta, tb })
}

// submit sends one message with py/submit.py through p's submissions
// (mode "ssl") or submission ("starttls", "plain") listener, logging in as
// user unless it is empty.
func (p *peer) submit(t *testing.T, mode, user string, args ...string) sendResult {
	t.Helper()
	port := p.subsPort
	if mode != "ssl" {
		port = p.subPort
	}
	full := []string{"--host", p.ip, "--port", itoa(port), "--mode", mode}
	if user != "" {
		full = append(full, "--user", user, "--password", p.password(user))
	}
	var r struct {
		sendResult
		Auth *reply `json:"auth"`
	}
	runPython(t, &r, "", "submit.py", append(full, args...)...)
	if user != "" && r.Error == "" && (r.Auth == nil || r.Auth.Code != 235) {
		t.Fatalf("AUTH %s: %+v, want 235", user, r.Auth)
	}
	return r.sendResult
}

// queueEntry is one entry of `postern queue list --json`.
type queueEntry struct {
	ID          int64  `json:"id"`
	QueueID     string `json:"queue_id"`
	From        string `json:"from"`
	Recipient   string `json:"recipient"`
	Domain      string `json:"domain"`
	Held        bool   `json:"held"`
	Attempts    int    `json:"attempts"`
	NextAttempt string `json:"next_attempt"`
	LastError   string `json:"last_error"`
}

func (s *server) queueList() []queueEntry {
	s.t.Helper()
	var out struct {
		Entries []queueEntry `json:"entries"`
	}
	js := s.cli("", "queue", "list", "--json")
	if err := json.Unmarshal([]byte(js), &out); err != nil {
		s.t.Fatalf("queue list --json: %v\n%s", err, js)
	}
	return out.Entries
}

// traceEvent is one line of `postern trace`.
type traceEvent struct {
	Time, QueueID, Kind, Detail string
}

func (s *server) trace(id string) []traceEvent {
	s.t.Helper()
	var evs []traceEvent
	for _, l := range strings.Split(strings.TrimSpace(s.cli("", "trace", id)), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		evs = append(evs, traceEvent{Time: f[0], QueueID: f[1], Kind: f[2], Detail: strings.TrimSpace(strings.Join(f[3:], " "))})
	}
	return evs
}

// eventsOf returns the events of one kind.
func eventsOf(evs []traceEvent, kind string) []traceEvent {
	var out []traceEvent
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond every 100 ms until it returns "" (done) or timeout
// passes, then fails with the last reason cond gave.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMessage waits until addr's INBOX on s holds a message with subject and
// returns it.
func waitMessage(t *testing.T, s *server, addr, subject string, timeout time.Duration) mboxMessage {
	t.Helper()
	var got []mboxMessage
	eventually(t, timeout, func() string {
		got = bySubject(s.export(addr, ""), subject)
		if len(got) == 0 {
			return fmt.Sprintf("no message %q in %s's INBOX", subject, addr)
		}
		return ""
	})
	if len(got) != 1 {
		t.Fatalf("%s has %d messages %q, want 1", addr, len(got), subject)
	}
	return got[0]
}
