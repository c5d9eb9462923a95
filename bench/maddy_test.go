//go:build !windows

package bench

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/postfixtest"
)

var maddyBin = flag.String("maddy.bin", os.Getenv("MADDY_BIN"),
	"maddy binary built by bench/maddy/build.sh (default $MADDY_BIN, then the script's cache, ~/.cache/postern-bench/maddy-v0.8.1/maddy)")

// maddyPath returns the maddy binary to run, or why there is none.
func maddyPath() (path, missing string) {
	p := *maddyBin
	if p == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", "no -maddy.bin and no home directory: " + err.Error()
			}
			cache = filepath.Join(home, ".cache")
		}
		p = filepath.Join(cache, "postern-bench", "maddy-v0.8.1", "maddy")
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Sprintf("no maddy binary at %s (build it with bench/maddy/build.sh, or pass -maddy.bin)", p)
	}
	return p, ""
}

// maddyConf is maddy's configuration for the benchmarks: its default
// maddy.conf cut down to a loopback MX for one local domain, delivering
// into its own storage (imapsql: an SQLite index plus one file per message
// body). Left out of the default, to match Postern's loopback defaults:
// TLS, the SPF/DKIM/DMARC/MX checks (Postern skips sender authentication
// for loopback clients; these would query DNS), and the inbound rate and
// concurrency limits (20 msgs/s over 10 connections), as Postfix's
// connection limit is lifted too. maddy still looks up the client's rDNS
// name once per session; -debug.dnsoverride points its resolver at a
// closed loopback port so the system resolver is never asked (127.0.0.1
// is answered from /etc/hosts anyway).
//
// Durability as shipped (checked with strace): before its 250 maddy writes
// the body to messages/<key> and fsyncs that file (no directory fsync),
// then commits the index row in SQLite in WAL mode with synchronous=NORMAL,
// which does not fsync the WAL on commit (only at checkpoints). A crash of
// the process loses nothing; a power loss can lose the last index commits.
// Postern fsyncs its index WAL before its 250 (shared by a batch).
//
// maddy is not in the IMAP mixed load (bench/imap_test.go): v0.8.1 does not
// offer UIDPLUS, so the profile's step "APPEND, then UID EXPUNGE the UID
// from APPENDUID" cannot run as is ("NO Command unsupported with UID"), and
// 8 clients appending at once get "database is locked" from its SQLite
// index unless its DSN asks for immediate transactions (_txlock=immediate).
const maddyConf = `state_dir {{dir}}/state
runtime_dir {{dir}}/run
hostname mx.maddy.test
tls off
log {{dir}}/maddy.log

storage.imapsql local_mailboxes {
    driver sqlite3
    dsn imapsql.db
}

smtp tcp://{{smtp}} {
    dmarc no
    default_source {
        destination {{domain}} {
            deliver_to &local_mailboxes
        }
        default_destination {
            reject 550 5.1.1 "User doesn't exist"
        }
    }
}
`

// maddyServer is a running maddy.
type maddyServer struct {
	cmd  *exec.Cmd
	dir  string
	smtp string
}

// startMaddy starts maddy with a throwaway state directory, an SMTP
// listener on loopback and a storage account for each of users (all in
// domain), and stops it when the benchmark ends.
func startMaddy(b *testing.B, bin, domain string, users []string) *maddyServer {
	m := &maddyServer{dir: b.TempDir(), smtp: freePort(b)}
	conf := strings.NewReplacer("{{dir}}", m.dir, "{{smtp}}", m.smtp, "{{domain}}", domain).Replace(maddyConf)
	confPath := filepath.Join(m.dir, "maddy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, u := range users {
		if out, err := exec.Command(bin, "--config", confPath, "imap-acct", "create", u).CombinedOutput(); err != nil {
			b.Fatalf("maddy imap-acct create %s: %v\n%s", u, err, out)
		}
	}
	noDNS := freePort(b) // closed again: lookups fail at once
	m.cmd = exec.Command(bin, "-debug.dnsoverride", noDNS, "--config", confPath, "run")
	stderr, err := os.OpenFile(filepath.Join(m.dir, "maddy.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644) // until it reads its config
	if err != nil {
		b.Fatal(err)
	}
	defer stderr.Close()
	m.cmd.Stdout, m.cmd.Stderr = stderr, stderr
	if err := m.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.stop)
	if err := postfixtest.WaitGreeting(m.smtp, 30*time.Second); err != nil {
		b.Fatalf("maddy did not answer on %s: %v\n%s", m.smtp, err, m.log())
	}
	return m
}

// stop ends maddy (SIGTERM, as its service unit does); it is safe to call
// more than once.
func (m *maddyServer) stop() {
	if m.cmd.ProcessState != nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-done
	}
}

// messages counts the message bodies in maddy's blob store.
func (m *maddyServer) messages() int {
	ents, _ := os.ReadDir(filepath.Join(m.dir, "state", "messages"))
	return len(ents)
}

// log returns the end of maddy's log, for failure messages.
func (m *maddyServer) log() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "maddy.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
