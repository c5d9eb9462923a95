//go:build !windows

package bench

import (
	"flag"
	"fmt"
	"net"
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
// In the IMAP mixed load (BenchmarkIMAPMixed20, see maddyIMAPConf) maddy
// serves IMAPS too, and two things differ from the other servers: v0.8.1
// does not offer UIDPLUS, so the profile's expunge step looks the appended
// message up and uses STORE \Deleted + EXPUNGE instead of UID EXPUNGE
// (imapExpungeNoUIDPlus); and its SQLite DSN asks for immediate
// transactions, without which it cannot run the load at all.
const maddyConf = `state_dir {{dir}}/state
runtime_dir {{dir}}/run
hostname mx.maddy.test
tls off
log {{dir}}/maddy.log

storage.imapsql local_mailboxes {
    driver sqlite3
    dsn imapsql.db{{dsnopts}}
}
{{imap}}
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

// maddyIMAPConf is added to maddyConf for the IMAP mixed load: an IMAPS
// endpoint on loopback with a self-signed certificate (the same kind as
// Dovecot's and Postern's: ECDSA P-256) and a password table for LOGIN.
// The password is hashed with bcrypt at cost 4, the least bcrypt allows,
// rather than maddy's default cost 10 (tens of milliseconds of CPU on
// every LOGIN, as maddy caches no verification): Dovecot checks a {PLAIN}
// password here and Postern verifies its argon2id hash once, then from a
// cache. maddy's faster salted SHA-256 is only compiled into its tests.
const maddyIMAPConf = `
auth.pass_table local_authdb {
    table sql_table {
        driver sqlite3
        dsn credentials.db
        table_name passwords
    }
}

imap tls://{{imap}} {
    tls file {{dir}}/cert.pem {{dir}}/key.pem
    auth &local_authdb
    storage &local_mailboxes
}
`

// maddyIMAPDSN is added to maddy's SQLite DSN for the IMAP mixed load. It
// is a fix maddy needs to run that load at all: its index opens deferred
// transactions, so when several sessions APPEND at once, a transaction
// that read first and then writes fails with "database is locked" when
// another has written in between (SQLite cannot upgrade its stale read to
// a write, and its busy timeout does not help); without it, filling INBOX
// from 8 sessions fails within a second ("NO CreateMessage (uidNext):
// database is locked"). Immediate transactions take the write lock up
// front, waiting for it, and never have to upgrade.
const maddyIMAPDSN = "?_txlock=immediate"

// maddyServer is a running maddy.
type maddyServer struct {
	cmd  *exec.Cmd
	dir  string
	smtp string
	imap string // IMAPS listener, when started by startMaddyIMAP
}

// startMaddy starts maddy with a throwaway state directory, an SMTP
// listener on loopback and a storage account for each of users (all in
// domain), and stops it when the benchmark ends.
func startMaddy(b *testing.B, bin, domain string, users []string) *maddyServer {
	m := &maddyServer{dir: b.TempDir(), smtp: freePort(b)}
	confPath := m.writeConf(b, domain, "", "")
	for _, u := range users {
		if out, err := exec.Command(bin, "--config", confPath, "imap-acct", "create", u).CombinedOutput(); err != nil {
			b.Fatalf("maddy imap-acct create %s: %v\n%s", u, err, out)
		}
	}
	m.run(b, bin, confPath)
	return m
}

// startMaddyIMAP starts maddy for the IMAP mixed load: user imapUser with
// password imapPass, imapMessages messages in INBOX (filled by APPEND, as
// for the other servers) and an IMAPS listener. It returns why not when
// maddy cannot run here.
func startMaddyIMAP(b *testing.B) (srv imapServer, missing string) {
	bin, missing := maddyPath()
	if missing != "" {
		return imapServer{}, missing
	}
	m := &maddyServer{dir: b.TempDir(), smtp: freePort(b), imap: freePort(b)}
	certPEM, keyPEM := selfSignedPEM(b)
	for name, content := range map[string]string{"cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(m.dir, name), []byte(content), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	_, domain, _ := strings.Cut(imapUser, "@")
	confPath := m.writeConf(b, domain, maddyIMAPConf, maddyIMAPDSN)
	for _, args := range [][]string{
		{"creds", "create", "--bcrypt-cost", "4", "--password", imapPass, imapUser},
		{"imap-acct", "create", imapUser},
	} {
		if out, err := exec.Command(bin, append([]string{"--config", confPath}, args...)...).CombinedOutput(); err != nil {
			b.Fatalf("maddy %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
	m.run(b, bin, confPath)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", m.imap)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("maddy did not listen on %s: %v\n%s", m.imap, err, m.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	imapFill(b, m.imap)
	return imapServer{addr: m.imap}, ""
}

// writeConf writes maddyConf, with the IMAP part and DSN options given,
// into m.dir and returns its path.
func (m *maddyServer) writeConf(b *testing.B, domain, imapPart, dsnOpts string) string {
	imapPart = strings.ReplaceAll(imapPart, "{{imap}}", m.imap)
	conf := strings.NewReplacer("{{imap}}", imapPart, "{{dsnopts}}", dsnOpts).Replace(maddyConf)
	conf = strings.NewReplacer("{{dir}}", m.dir, "{{smtp}}", m.smtp, "{{domain}}", domain).Replace(conf)
	confPath := filepath.Join(m.dir, "maddy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	return confPath
}

// run starts maddy with its configuration at confPath, waits for its SMTP
// greeting and stops it when the benchmark ends.
func (m *maddyServer) run(b *testing.B, bin, confPath string) {
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
