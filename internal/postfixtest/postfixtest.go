//go:build !windows

// Package postfixtest runs a private instance of Debian's Postfix on
// loopback for end-to-end tests and benchmarks, as in RECIPES.md but with
// its own configuration, queue, data and mail directories under a temporary
// directory (postfix -c DIR), so that /etc/postfix is only read (for
// master.cf), never changed. The instance is stopped when the test ends.
package postfixtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// VirtualUID owns the virtual mailboxes (virtual_uid_maps, virtual_gid_maps).
const VirtualUID = 5000

// Options configure an instance.
type Options struct {
	Hostname string   // myhostname
	Listen   []string // "127.0.0.4:2525": one smtpd service each (127/8 may relay)
	// Mailboxes are the virtual mailbox users ("carol@c.test"), delivered
	// to Maildirs; their domains become virtual_mailbox_domains.
	Mailboxes []string
	// Transport maps domains to next hops, "smtp:[127.0.0.3]:2525".
	Transport map[string]string
	// TLS gives smtpd a self-signed certificate (STARTTLS offered) and
	// makes the smtp client use STARTTLS when offered.
	TLS bool
	// Main holds extra main.cf settings, "key = value".
	Main []string
	// Master holds extra master.cf services, in postconf -M form.
	Master []string
}

// Instance is a running Postfix.
type Instance struct {
	Dir  string // everything lives here
	Etc  string // config_directory
	Mail string // virtual_mailbox_base
	log  string
	tb   testing.TB
}

// Missing returns why Postfix cannot be run here, or "" if it can.
func Missing() string {
	for _, tool := range []string{"postfix", "postconf", "postmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				return tool + " is not installed (apt-get install -y postfix; scripts/install-test-deps.sh does it)"
			}
		}
	}
	if _, err := os.Stat("/etc/postfix/master.cf"); err != nil {
		return "no /etc/postfix/master.cf to start from: " + err.Error()
	}
	if os.Geteuid() != 0 {
		return "starting postfix needs root"
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return "no postfix user: " + err.Error()
	}
	return ""
}

// Tool returns the path of a Postfix program (postfix, smtp-sink, ...),
// looking in /usr/sbin too.
func Tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/sbin/" + name
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not installed", name)
	}
	return p, nil
}

// Start configures and starts an instance and waits for every listener's
// greeting. Call Missing first.
func Start(tb testing.TB, o Options) *Instance {
	tb.Helper()
	dir, err := os.MkdirTemp("", "postern-postfix-")
	if err != nil {
		tb.Fatal(err)
	}
	os.Chmod(dir, 0o755) // postfix's own processes must reach their queue
	in := &Instance{Dir: dir, Etc: filepath.Join(dir, "etc"), Mail: filepath.Join(dir, "mail"), log: filepath.Join(dir, "postfix.log"), tb: tb}
	tb.Cleanup(func() {
		in.Stop()
		if tb.Failed() || os.Getenv("POSTFIX_LOG") != "" {
			tb.Logf("postfix log:\n%s", in.Log())
		}
		os.RemoveAll(dir)
	})
	data := filepath.Join(dir, "data")
	for _, d := range []string{in.Etc, data, filepath.Join(dir, "queue"), in.Mail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		tb.Fatal(err)
	}
	uid, _ := strconv.Atoi(pf.Uid)
	gid, _ := strconv.Atoi(pf.Gid)
	if err := os.Chown(data, uid, gid); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(in.Mail, VirtualUID, VirtualUID); err != nil {
		tb.Fatal(err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		tb.Fatal(err)
	}
	in.write("master.cf", string(master))
	in.write("main.cf", "")
	if dm, err := os.ReadFile("/etc/postfix/dynamicmaps.cf"); err == nil {
		in.write("dynamicmaps.cf", string(dm))
	}
	var vmail, transport []string
	domains := map[string]bool{}
	for _, m := range o.Mailboxes {
		at := strings.LastIndexByte(m, '@')
		if at < 0 {
			tb.Fatalf("postfixtest: mailbox %q is not an address", m)
		}
		domains[m[at+1:]] = true
		vmail = append(vmail, fmt.Sprintf("%s %s/%s/", m, m[at+1:], m[:at]))
	}
	for d, next := range o.Transport {
		transport = append(transport, d+" "+next)
	}
	sort.Strings(transport)
	var vdomains []string
	for d := range domains {
		vdomains = append(vdomains, d)
	}
	sort.Strings(vdomains)
	in.write("vmailbox", strings.Join(vmail, "\n")+"\n")
	in.write("transport", strings.Join(transport, "\n")+"\n")

	main := []string{
		"queue_directory = " + filepath.Join(dir, "queue"), "data_directory = " + data,
		"mail_owner = postfix", "compatibility_level = 3.6",
		"myhostname = " + o.Hostname, "mydestination =", "alias_maps =", "alias_database =",
		// Services name their own 127.x address; 127/8 may relay.
		"inet_interfaces = loopback-only", "inet_protocols = ipv4", "mynetworks = 127.0.0.0/8",
		"virtual_mailbox_domains = " + strings.Join(vdomains, " "), "virtual_mailbox_base = " + in.Mail,
		"virtual_mailbox_maps = hash:" + filepath.Join(in.Etc, "vmailbox"),
		"virtual_uid_maps = static:" + strconv.Itoa(VirtualUID), "virtual_gid_maps = static:" + strconv.Itoa(VirtualUID),
		"transport_maps = hash:" + filepath.Join(in.Etc, "transport"),
		"maillog_file_prefixes = " + dir, "maillog_file = " + in.log,
		"smtpd_peername_lookup = no", // no reverse DNS: loopback only, no resolver
		"smtp_host_lookup = native", "smtp_dns_support_level = disabled",
		"default_process_limit = 20",
		"smtpd_banner = $myhostname ESMTP",
	}
	if o.TLS {
		cert, key := in.selfSigned(o.Hostname)
		main = append(main, "smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = may",
			"smtp_tls_security_level = may", "smtpd_tls_received_header = yes", "smtp_tls_loglevel = 1", "smtpd_tls_loglevel = 1")
	}
	in.run("postconf", append([]string{"-c", in.Etc, "-e"}, append(main, o.Main...)...)...)
	in.run("postconf", "-c", in.Etc, "-F", "*/*/chroot = n")
	in.run("postconf", "-c", in.Etc, "-M#", "smtp/inet")
	for _, addr := range o.Listen {
		in.run("postconf", "-c", in.Etc, "-M", addr+"/inet="+addr+" inet n - n - - smtpd")
	}
	for _, m := range o.Master {
		in.run("postconf", "-c", in.Etc, "-M", m)
	}
	in.run("postmap", "-c", in.Etc, filepath.Join(in.Etc, "vmailbox"))
	in.run("postmap", "-c", in.Etc, filepath.Join(in.Etc, "transport"))
	in.run("postfix", "-c", in.Etc, "start")
	for _, addr := range o.Listen {
		if err := WaitGreeting(addr, 15*time.Second); err != nil {
			tb.Fatalf("postfix: %v\nlog:\n%s", err, in.Log())
		}
	}
	return in
}

func (in *Instance) write(name, content string) {
	if err := os.WriteFile(filepath.Join(in.Etc, name), []byte(content), 0o644); err != nil {
		in.tb.Fatal(err)
	}
}

func (in *Instance) run(name string, args ...string) {
	in.tb.Helper()
	p, err := Tool(name)
	if err != nil {
		in.tb.Fatal(err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		in.tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// selfSigned writes a certificate and key for host into Etc.
func (in *Instance) selfSigned(host string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		in.tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		in.tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		in.tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(in.Etc, "cert.pem"), filepath.Join(in.Etc, "key.pem")
	in.write("cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	in.write("key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	os.Chmod(keyFile, 0o600)
	return certFile, keyFile
}

// Log returns Postfix's log so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.log)
	return string(b)
}

// Maildir returns the Maildir of a virtual mailbox user.
func (in *Instance) Maildir(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	return filepath.Join(in.Mail, addr[at+1:], addr[:at])
}

// NewMessages returns the contents of the files in a user's Maildir/new.
func (in *Instance) NewMessages(addr string) []string {
	ents, err := os.ReadDir(filepath.Join(in.Maildir(addr), "new"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(in.Maildir(addr), "new", e.Name())); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// Postqueue runs postqueue -c Etc with args (-p lists the queue, -f flushes).
func (in *Instance) Postqueue(args ...string) (string, error) {
	p, err := Tool("postqueue")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(p, append([]string{"-c", in.Etc}, args...)...).CombinedOutput()
	return string(out), err
}

// Stop stops the instance (postfix stop) and makes sure its master process
// is gone, killing it by its pid file if it lingers. It is safe to call
// more than once.
func (in *Instance) Stop() {
	pidFile := filepath.Join(in.Dir, "queue", "pid", "master.pid")
	pid := 0
	if b, err := os.ReadFile(pidFile); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid <= 0 {
		return
	}
	if p, err := Tool("postfix"); err == nil {
		exec.Command(p, "-c", in.Etc, "stop").Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.Remove(pidFile)
}

// WaitGreeting waits until a 220 greeting arrives at addr.
func WaitGreeting(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 3)
			_, err = c.Read(buf)
			c.Close()
			if err == nil && string(buf) == "220" {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("greeting %q", buf)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no greeting from %s within %v: %v", addr, timeout, errors.Join(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
