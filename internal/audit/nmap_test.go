package audit_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/audit"
	"github.com/postern-mail/postern/internal/smtpd"
)

// nmapResult is what Debian's nmap smtp-enum-users and smtp-open-relay
// scripts report for one server.
type nmapResult struct {
	users []string
	relay bool
	took  time.Duration
	raw   string
}

type nmapRun struct {
	Ports []struct {
		Scripts []struct {
			ID     string `xml:"id,attr"`
			Output string `xml:"output,attr"`
		} `xml:"script"`
	} `xml:"host>ports>port"`
}

// runNmap runs nmap's SMTP scripts against addr with the wordlist.
func runNmap(t *testing.T, addr, userdb, domain string) nmapResult {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nmap", "-Pn", "-n", "-sV", "--version-intensity", "0", "-p", port,
		"--script", "smtp-commands,smtp-enum-users,smtp-open-relay",
		"--script-args", "userdb="+userdb+",smtp-enum-users.domain="+domain+",smtp-open-relay.domain="+domain,
		"-oX", "-", host).Output()
	if err != nil {
		t.Fatalf("nmap %s: %v", addr, err)
	}
	var run nmapRun
	if err := xml.Unmarshal(out, &run); err != nil {
		t.Fatalf("nmap %s: %v", addr, err)
	}
	res := nmapResult{took: time.Since(start), users: []string{}}
	for _, p := range run.Ports {
		for _, s := range p.Scripts {
			res.raw += s.ID + ": " + s.Output + "\n"
			switch s.ID {
			case "smtp-enum-users":
				for _, l := range strings.Split(s.Output, "\n") {
					l = strings.TrimSpace(l)
					if l != "" && !strings.Contains(l, " ") {
						res.users = append(res.users, strings.TrimSuffix(l, "@"+domain))
					}
				}
			case "smtp-open-relay":
				res.relay = strings.Contains(s.Output, "is an open relay")
			}
		}
	}
	slices.Sort(res.users)
	return res
}

// TestCompareNmap runs Debian's nmap SMTP scripts and postern audit against
// the same real servers and checks that the audit finds at least what nmap
// finds, with none of nmap's false positives. It is slow (nmap tests relay
// on one connection into Postfix's error tarpit), so it runs only with
// POSTERN_AUDIT_NMAP=1; it logs the comparison table.
func TestCompareNmap(t *testing.T) {
	if os.Getenv("POSTERN_AUDIT_NMAP") == "" {
		t.Skip("set POSTERN_AUDIT_NMAP=1 to compare with nmap (about 30 s)")
	}
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Fatal("nmap is not installed (apt-get install nmap)")
	}
	p := startPostfix(t)
	names := []string{"alice", "bob", "carol", "dave", "root", "admin", "info", "sales"}
	userdb := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(userdb, []byte(strings.Join(names, "\n")+"\n"), 0o644)
	type server struct {
		name, addr, domain string
		real               []string // the users that exist
		relay              bool     // really an open relay
		catchAll           bool     // no method can tell users apart
		nmapAddr           string   // another instance for nmap, when its state would interfere
	}
	// Postern's harvesting defence as configured by default; nmap gets an
	// instance of its own, so that one tool's probes do not get the other
	// blocked.
	defaults := func(c *smtpd.Config) {
		c.UnknownRcptDelayAfter, c.UnknownRcptDelay, c.UnknownRcptMax = 3, time.Second, 10
		c.UnknownRcptPerIP, c.UnknownRcptWindow, c.UnknownRcptCooldown = 20, 10*time.Minute, 10*time.Minute
	}
	servers := []server{
		{"Postfix, VRFY on", p.vrfy, "test.example", []string{"alice", "bob"}, false, false, ""},
		{"Postfix, VRFY off", p.noVRFY, "test.example", []string{"alice", "bob"}, false, false, ""},
		{"Postfix, catch-all", p.catchAll, "test.example", []string{"alice", "bob"}, false, true, ""},
		{"Postfix, open relay", p.openRelay, "test.example", []string{"alice", "bob"}, true, false, ""},
		{"Postern, harvesting defence off", startPostern(t), "example.org", []string{"alice", "bob"}, false, false, ""},
		{"Postern, defaults", startPosternWith(t, defaults), "example.org", []string{"alice", "bob"}, false, false, startPosternWith(t, defaults)},
	}
	type row struct {
		nmap  nmapResult
		audit *audit.Report
		took  time.Duration
	}
	rows := make([]row, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := s.addr
			if s.nmapAddr != "" {
				addr = s.nmapAddr
			}
			rows[i].nmap = runNmap(t, addr, userdb, s.domain)
		}()
		o := fastOptions(s.addr)
		o.Users, o.Domain, o.Deadline = names, s.domain, time.Minute
		start := time.Now()
		rows[i].audit = runAudit(t, "smtp", o)
		rows[i].took = time.Since(start)
	}
	wg.Wait()

	var table strings.Builder
	table.WriteString("| server | nmap users | nmap relay | nmap false positives | nmap time | audit users | audit relay | audit time | audit notes |\n")
	table.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for i, s := range servers {
		n, r := rows[i].nmap, rows[i].audit
		var found []string
		for _, v := range r.Users.Valid {
			found = append(found, strings.TrimSuffix(v, "@"+s.domain))
		}
		var notes []string
		if r.Users.CatchAll {
			notes = append(notes, "catch-all")
		}
		notes = append(notes, "method "+r.Users.Method)
		for _, f := range []struct {
			on   bool
			name string
		}{{r.Users.Throttled, "throttled"}, {r.Users.Tarpit, "tarpit"}, {len(r.Users.Inconclusive) > 0, fmt.Sprintf("%d inconclusive", len(r.Users.Inconclusive))}} {
			if f.on {
				notes = append(notes, f.name)
			}
		}
		var fp []string
		for _, u := range n.users {
			if !slices.Contains(s.real, u) {
				fp = append(fp, u)
			}
		}
		if s.catchAll && len(n.users) >= len(names) {
			fp = []string{fmt.Sprintf("every name (%d of %d)", len(n.users)-len(s.real), len(names)-len(s.real))}
		}
		if n.relay && !s.relay {
			fp = append(fp, "open relay")
		}
		fmt.Fprintf(&table, "| %s | %s | %v | %s | %.1fs | %s | %v | %.2fs | %s |\n", s.name, listOrNone(n.users, " "), n.relay,
			listOrNone(fp, ", "), n.took.Seconds(), listOrNone(found, " "), r.Relay.Open, rows[i].took.Seconds(), strings.Join(notes, ", "))

		// The audit finds every real user nmap finds (on a catch-all
		// nmap "finds" every name, which proves nothing), and reports no
		// user that does not exist.
		if s.catchAll && (!r.Users.CatchAll || len(found) != 0) {
			t.Errorf("%s: users %+v, want catch-all and none", s.name, r.Users)
		}
		for _, u := range n.users {
			if !s.catchAll && slices.Contains(s.real, u) && !slices.Contains(found, u) {
				t.Errorf("%s: nmap found %s, the audit did not", s.name, u)
			}
		}
		for _, u := range found {
			if !slices.Contains(s.real, u) {
				t.Errorf("%s: the audit reports %s, which does not exist", s.name, u)
			}
		}
		if r.Relay.Open != s.relay {
			t.Errorf("%s: audit relay open %v, really %v", s.name, r.Relay.Open, s.relay)
		}
		if n.relay && s.relay && !r.Relay.Open {
			t.Errorf("%s: nmap finds an open relay, the audit does not", s.name)
		}
		t.Logf("%s nmap output:\n%s", s.name, n.raw)
	}
	t.Logf("comparison (wordlist %v):\n%s", names, table.String())
}

func listOrNone(l []string, sep string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, sep)
}
