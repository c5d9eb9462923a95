package imapd

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSTARTTLSInjection sends "a STARTTLS" and "b CAPABILITY" in one
// segment (CVE-2011-0411, "NO STARTTLS" 2021): the pipelined plaintext
// command must never be answered inside the TLS session. Postern's IMAP
// server hands the leftover plaintext to the TLS handshake, which then
// fails, so the injected command is never run.
func TestSTARTTLSInjection(t *testing.T) {
	e := newEnv(t)
	conn, err := net.Dial("tcp", e.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	if g, _ := br.ReadString('\n'); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	if _, err := io.WriteString(conn, "a STARTTLS\r\nb CAPABILITY\r\n"); err != nil {
		t.Fatal(err)
	}
	l, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading STARTTLS reply: %v", err)
	}
	if strings.HasPrefix(l, "b ") || strings.HasPrefix(l, "* CAPABILITY") {
		t.Fatalf("injected command answered in plaintext: %q", l)
	}
	if !strings.HasPrefix(l, "a OK") {
		// Refusing STARTTLS outright is acceptable too; nothing else may follow.
		return
	}
	if br.Buffered() > 0 {
		t.Fatalf("plaintext after the STARTTLS reply: %d bytes", br.Buffered())
	}
	tc := tls.Client(conn, e.clientTLS)
	if err := tc.Handshake(); err != nil {
		return // the injected bytes broke the handshake: the session is refused
	}
	tc.SetReadDeadline(time.Now().Add(time.Second))
	got, _ := io.ReadAll(tc)
	if strings.Contains(string(got), "b ") || strings.Contains(string(got), "CAPABILITY") {
		t.Fatalf("injected command answered inside TLS: %q", got)
	}
}

// TestSTARTTLSResetsCapabilities checks that after STARTTLS the server
// forgets what it told the plaintext session: LOGINDISABLED and STARTTLS
// are gone, AUTH=PLAIN appears, and a second STARTTLS is refused.
func TestSTARTTLSResetsCapabilities(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, false)
	r.ok("STARTTLS")
	tc := tls.Client(r.conn, e.clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r.conn, r.br = tc, bufio.NewReader(tc)
	caps := r.ok("CAPABILITY")
	if has(caps, "LOGINDISABLED") || has(caps, "STARTTLS") || !has(caps, "AUTH=PLAIN") {
		t.Fatalf("capabilities after STARTTLS: %q", caps)
	}
	r.expect("BAD", "STARTTLS")
	r.login()
}
