package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The nmap matrix: Debian's nmap and its NSE scripts, the tools every
// scan of a mail server on the internet uses, run against the built
// binary on loopback (issue 7). Thresholds are set low in the config so
// that the whole matrix takes seconds.

// nmapPath returns the path of nmap, or skips (fails under CI).
func nmapPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nmap")
	if err != nil {
		needTool(t, "nmap", "install it with apt-get install -y nmap")
	}
	return p
}

// nmapScript is one script's output on one port.
type nmapScript struct {
	Port   int
	ID     string
	Output string
}

type nmapXML struct {
	Ports []struct {
		PortID  int `xml:"portid,attr"`
		Service struct {
			Name string `xml:"name,attr"`
		} `xml:"service"`
		Scripts []struct {
			ID     string `xml:"id,attr"`
			Output string `xml:"output,attr"`
		} `xml:"script"`
	} `xml:"host>ports>port"`
}

// nmapServices names the service on each listener key, as nmap's smtp-*,
// imap-* and pop3-* scripts expect to find it (their rules match the
// standard ports or these names).
var nmapServices = map[string]string{
	"smtp": "smtp", "submission": "submission", "submissions": "smtps",
	"imap": "imap", "imaps": "imaps", "pop3": "pop3", "pop3s": "pop3s",
}

// runNmap runs nmap's scripts against the given listeners of a. Instead of
// service detection (-sV: over 30 s a port, waiting out probes that an
// SMTP server answers with 500), nmap gets a data directory whose
// nmap-services names the service on each port; the scripts find TLS by
// themselves (comm.tryssl). It returns every script's output by port.
func runNmap(t *testing.T, a *authServer, keys []string, scripts string, args ...string) ([]nmapScript, time.Duration) {
	t.Helper()
	nm := nmapPath(t)
	datadir := t.TempDir()
	var services, ports []string
	for _, k := range keys {
		services = append(services, fmt.Sprintf("%s\t%d/tcp\t0.5", nmapServices[k], a.ports[k]))
		ports = append(ports, itoa(a.ports[k]))
	}
	if err := os.WriteFile(filepath.Join(datadir, "nmap-services"), []byte(strings.Join(services, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	xmlOut := filepath.Join(datadir, "out.xml")
	cmdArgs := []string{"-Pn", "-n", "-d", "--datadir", datadir, "-p", strings.Join(ports, ","),
		"--script", scripts, "-oX", xmlOut}
	if len(args) > 0 {
		cmdArgs = append(cmdArgs, "--script-args", strings.Join(args, ","))
	}
	cmdArgs = append(cmdArgs, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	log, err := exec.CommandContext(ctx, nm, cmdArgs...).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("nmap %s: %v (after %v)\n%s", strings.Join(cmdArgs, " "), err, took, log)
	}
	out, err := os.ReadFile(xmlOut)
	if err != nil {
		t.Fatal(err)
	}
	var run nmapXML
	if err := xml.Unmarshal(out, &run); err != nil {
		t.Fatalf("nmap output: %v\n%s", err, out)
	}
	var res []nmapScript
	for _, p := range run.Ports {
		for _, s := range p.Scripts {
			t.Logf("port %d (%s) %s:\n%s", p.PortID, p.Service.Name, s.ID, s.Output)
			res = append(res, nmapScript{Port: p.PortID, ID: s.ID, Output: s.Output})
		}
	}
	// The brute scripts also report each account as they find it in the
	// debug output (-d): imap-brute 7.93 can crash while closing its
	// connections after a find, and its output is then only an error.
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "Discovered account") {
			t.Logf("%s", l)
			res = append(res, nmapScript{Port: discoveredPort(l), ID: "debug", Output: l})
		}
	}
	t.Logf("nmap %s took %v", scripts, took)
	return res, took
}

// discoveredPort is the port in a line like "NSE: [imap-brute
// 127.0.0.1:993] Discovered account: ..."; 0 if none.
func discoveredPort(l string) int {
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+)\]`).FindStringSubmatch(l)
	if m == nil {
		return 0
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// script returns the output of script id on port, failing if it did not run.
func script(t *testing.T, res []nmapScript, port int, id string) string {
	t.Helper()
	for _, s := range res {
		if s.Port == port && s.ID == id {
			return s.Output
		}
	}
	t.Errorf("nmap did not run %s on port %d", id, port)
	return ""
}

// writeLines writes a word list for nmap and returns its path.
func writeLines(t *testing.T, name string, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNmapSMTP runs nmap's SMTP scripts against the MX and the submission
// listener: smtp-open-relay's 16 relay tests all fail; smtp-enum-users
// finds no account with VRFY (252 for every name), EXPN (502) or RCPT
// (the per-connection limit on unknown recipients closes the connection
// before the real users in the list come up); smtp-commands shows no
// AUTH on the MX; smtp-vuln-cve2010-4344 (an Exim bug) finds nothing.
func TestNmapSMTP(t *testing.T) {
	nmapPath(t)
	a := startAuthServer(t, `rcpt_unknown_delay_after = 2
rcpt_unknown_delay = "10ms"
rcpt_unknown_max = 6`, "alice", "bob")
	mx, sub := a.ports["smtp"], a.ports["submission"]
	var users []string
	for i := 1; i <= 8; i++ {
		users = append(users, fmt.Sprintf("nosuch%d", i))
	}
	users = append(users, "alice", "bob", "postmaster", "root", "admin")
	userdb := writeLines(t, "users.txt", users)
	res, took := runNmap(t, a, []string{"smtp", "submission"},
		"smtp-commands,smtp-enum-users,smtp-open-relay,smtp-vuln-cve2010-4344,smtp-strangeport",
		"userdb="+userdb, "smtp-enum-users.domain=example.test", "smtp-enum-users.methods={VRFY,EXPN,RCPT}",
		"smtp-open-relay.domain=relay.nmap.test", "smtp-open-relay.ip=127.0.0.1")

	for _, port := range []int{mx, sub} {
		relay := script(t, res, port, "smtp-open-relay")
		if strings.Contains(relay, "open relay (") || !(strings.Contains(relay, "all tests failed") || strings.Contains(relay, "authentication needed")) {
			t.Errorf("smtp-open-relay on port %d: %q, want all 16 tests failed", port, relay)
		}
		enum := script(t, res, port, "smtp-enum-users")
		for _, u := range []string{"alice", "bob"} {
			if strings.Contains(enum, u) {
				t.Errorf("smtp-enum-users on port %d found %s:\n%s", port, u, enum)
			}
		}
		if s := script(t, res, port, "smtp-vuln-cve2010-4344"); strings.Contains(s, "VULNERABLE") && !strings.Contains(s, "NOT VULNERABLE") {
			t.Errorf("smtp-vuln-cve2010-4344 on port %d:\n%s", port, s)
		}
	}
	if cmds := script(t, res, mx, "smtp-commands"); strings.Contains(cmds, "AUTH") || !strings.Contains(cmds, "STARTTLS") {
		t.Errorf("smtp-commands on the MX: %q, want STARTTLS and no AUTH", cmds)
	}
	// The relay test ran all 16 tests on one connection on the MX: it
	// must not have been cut short by the limit on unknown recipients.
	if relay := script(t, res, mx, "smtp-open-relay"); !strings.Contains(relay, "all tests failed") {
		t.Errorf("smtp-open-relay on the MX did not complete its 16 tests: %q", relay)
	}
	if logs := a.stderr.String(); !strings.Contains(logs, "address harvesting: connection closed") {
		t.Errorf("smtp-enum-users' RCPT probing did not hit the per-connection limit:\n%s", tail(logs, 40))
	}
	t.Logf("SMTP matrix: %v", took)
}

// The brute-force list: wrong passwords for alice, her right one at
// rightAt (well past auth_max_failures = 8, so that the five threads each
// script runs cannot reach it before eight distinct failures are counted),
// then two more wrong ones.
const rightAt, bruteTotal = 20, 22

// brutePassword is the password tried at position i (from 1).
func brutePassword(i int) string {
	switch {
	case i == rightAt:
		return "secret-alice@example.test"
	case i > rightAt:
		return fmt.Sprintf("guess%d", i-1)
	}
	return fmt.Sprintf("guess%d", i)
}

// bruteCreds writes the list for nmap's brute.credfile.
func bruteCreds(t *testing.T) string {
	var lines []string
	for i := 1; i <= bruteTotal; i++ {
		lines = append(lines, "alice@example.test/"+brutePassword(i))
	}
	return writeLines(t, "creds.txt", lines)
}

// runBrute runs smtp-brute, imap-brute and pop3-brute (those of scripts)
// at once against all six login listeners of a, with the list of
// bruteCreds in that order.
func runBrute(t *testing.T, a *authServer, scripts string) ([]nmapScript, time.Duration) {
	t.Helper()
	return runNmap(t, a, authListeners, scripts,
		"brute.mode=creds", "brute.credfile="+bruteCreds(t), "brute.useraspass=false", "brute.emptypass=false")
}

// found reports whether nmap found alice's password on port.
func found(res []nmapScript, port int) bool {
	for _, s := range res {
		if s.Port == port && (strings.Contains(s.Output, "Valid credentials") || strings.Contains(s.Output, "secret-alice")) {
			return true
		}
	}
	return false
}

// swaksGuesses tries the passwords of bruteCreds in order with swaks, one
// connection each, against the submissions listener (implicit TLS), and
// returns the reply to each AUTH, or to the connection if refused.
func swaksGuesses(t *testing.T, a *authServer) []string {
	t.Helper()
	var replies []string
	code := regexp.MustCompile(`(?m)^<[~-]\*? +((?:235|535|454|421) [0-9.]+)`)
	for i := 1; i <= bruteTotal; i++ {
		out, _ := runSwaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", a.ports["submissions"]), "--tlsc",
			"--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", brutePassword(i),
			"--quit-after", "AUTH", "--to", "alice@example.test")
		m := code.FindAllStringSubmatch(out, -1)
		switch {
		case len(m) > 0:
			replies = append(replies, m[len(m)-1][1])
		case strings.Contains(out, "421 4.7.0"):
			replies = append(replies, "421 4.7.0")
		default:
			replies = append(replies, "?")
			t.Logf("swaks attempt %d:\n%s", i, out)
		}
	}
	return replies
}

// TestNmapBruteForce runs nmap's imap-brute and pop3-brute (and
// smtp-brute), all at once as a guesser would, with a list holding alice's
// password 20th, and swaks through the same list on SMTP AUTH. Against a
// server with the throttle off (the control) imap-brute, pop3-brute and
// swaks find the password over implicit TLS, none over plaintext (no
// login before TLS). Against one that refuses an IP after 8 failures,
// shared by the three protocols, nothing is found anywhere: the IP is
// refused before the right password comes up.
//
// nmap 7.93's smtp-brute cannot test Postern: it sends AUTH without EHLO on
// its connections, which go-smtp (like Postfix) answers "502 5.5.1 Please
// introduce yourself first"; it runs in the throttled pass only, to show
// that it finds nothing, and swaks stands in for it.
func TestNmapBruteForce(t *testing.T) {
	nmapPath(t)
	swaks(t)
	control := startAuthServer(t, `auth_fail_delay = "0s"
auth_delay_after = 0
auth_max_failures = 0`, "alice")
	res, tookControl := runBrute(t, control, "imap-brute,pop3-brute")
	for _, k := range []string{"imaps", "pop3s"} {
		if !found(res, control.ports[k]) {
			t.Errorf("control: nmap did not find alice's password on %s with the throttle off: the test would prove nothing", k)
		}
	}
	for _, k := range []string{"imap", "pop3"} {
		if found(res, control.ports[k]) {
			t.Errorf("control: nmap found alice's password on %s, in plaintext: login before TLS", k)
		}
	}
	start := time.Now()
	if r := swaksGuesses(t, control); r[rightAt-1] != "235 2.0.0" {
		t.Errorf("control: swaks replies %q, want 235 2.0.0 for attempt %d (the right password)", r, rightAt)
	}
	tookControl += time.Since(start)
	control.stop()

	a := startAuthServer(t, `auth_fail_delay = "0s"
auth_delay_after = 3
auth_delay_step = "10ms"
auth_max_delay = "50ms"
auth_max_failures = 8
auth_window = "10m"
auth_cooldown = "10m"`, "alice")
	res, took := runBrute(t, a, "smtp-brute,imap-brute,pop3-brute")
	for _, k := range authListeners {
		if found(res, a.ports[k]) {
			t.Errorf("nmap found alice's password on %s past the refusal threshold", k)
		}
	}
	for k, id := range map[string]string{"submissions": "smtp-brute", "imaps": "imap-brute", "pop3s": "pop3-brute"} {
		script(t, res, a.ports[k], id) // it ran
	}
	logs := a.stderr.String()
	if !strings.Contains(logs, "too many failed logins: refusing this IP for the cool-down") {
		t.Errorf("the throttle did not start a cool-down:\n%s", tail(logs, 40))
	}
	// The IP is in its cool-down: swaks, through the same list, never gets
	// further than 421 at the greeting or 454 to AUTH.
	start = time.Now()
	for i, r := range swaksGuesses(t, a) {
		if !strings.HasPrefix(r, "421 4.7.0") && !strings.HasPrefix(r, "454 4.7.0") {
			t.Errorf("swaks attempt %d after nmap: %q, want 421 or 454 4.7.0", i+1, r)
		}
	}
	took += time.Since(start)
	if logs := a.stderr.String(); strings.Contains(logs, `msg=authenticated`) || strings.Contains(logs, `msg="imap login"`) || strings.Contains(logs, `msg="pop3 login"`) {
		t.Errorf("a login succeeded:\n%s", tail(logs, 40))
	}
	t.Logf("brute force: control %v, throttled %v", tookControl, took)
}

// TestSwaksBruteForceSMTP: swaks alone through the list on SMTP AUTH, the
// only client on a fresh server: failures 1 to 8 get 535, and from the
// 9th attempt the IP is refused (421 on connecting), so the right
// password, 20th, is never checked.
func TestSwaksBruteForceSMTP(t *testing.T) {
	swaks(t)
	a := startAuthServer(t, `auth_fail_delay = "0s"
auth_delay_after = 3
auth_delay_step = "10ms"
auth_max_delay = "50ms"
auth_max_failures = 8
auth_window = "10m"
auth_cooldown = "10m"`, "alice")
	r := swaksGuesses(t, a)
	for i, got := range r {
		want := "535 5.7.8"
		if i >= 8 {
			want = "421 4.7.0"
		}
		if got != want {
			t.Errorf("attempt %d: %q, want %q (all: %q)", i+1, got, want, r)
		}
	}
}
