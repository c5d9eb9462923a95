package imapd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/smtpd"
)

// TestIdleSeesSMTPDelivery: a message accepted by the MX SMTP server over
// a real socket reaches an IMAP session in IDLE within a second, through
// the store's broadcaster (DESIGN.md step 7).
func TestIdleSeesSMTPDelivery(t *testing.T) {
	e := newEnv(t)
	mx := smtpd.New(smtpd.Config{
		Hostname: "mx.example.test", MaxMessageBytes: 1 << 20, MaxRecipients: 10,
		MaxConnections: 10, MaxConnectionsPerIP: 10, MaxLineLength: 4096,
		CommandTimeout: time.Minute, DataTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, e.st)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go mx.Serve(l)
	t.Cleanup(func() { mx.Shutdown(context.Background()) })

	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.send("i1 IDLE")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	msg := "From: bob@example.org\r\nTo: " + testUser + "\r\nSubject: over SMTP\r\n\r\nhello\r\n"
	if err := smtp.SendMail(l.Addr().String(), nil, "bob@example.org", []string{testUser}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	r.conn.SetReadDeadline(time.Now().Add(time.Second))
	line, err := r.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* 1 EXISTS") {
		t.Fatalf("after SMTP delivery, IDLE got %q, %v (within %v)", line, err, time.Since(sent))
	}
	t.Logf("EXISTS %v after the SMTP 250", time.Since(sent))
	r.send("DONE")
	for {
		l := r.line()
		if strings.HasPrefix(l, "i1 ") {
			break
		}
	}
	u := r.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if !has(u, "Subject: over SMTP") {
		t.Fatalf("fetched %q", u)
	}
}
