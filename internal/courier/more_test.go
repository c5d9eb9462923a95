package courier

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestDSNParametersPassedOn(t *testing.T) {
	port := freePort(t, "127.0.0.1", "127.0.0.2")
	dsn := startReceiver(t, "127.0.0.1", port, withDSN())
	plain := startReceiver(t, "127.0.0.2", port)
	c := newCourier(t, port, zone(
		"dsn.example. MX 10 mx.dsn.example.", "mx.dsn.example. A 127.0.0.1",
		"plain.example. MX 10 mx.plain.example.", "mx.plain.example. A 127.0.0.2",
	))
	env := Envelope{
		From: "a@sender.test", Recipients: []string{"b@dsn.example", "c@dsn.example", "d@dsn.example"},
		Ret: "hdrs", EnvID: "Q123",
		DSN: []RcptDSN{
			{Notify: "FAILURE,DELAY", ORcpt: "rfc822;b@dsn.example"},
			{Notify: "NEVER,SUCCESS"}, // malformed: left out
		},
	}
	att := c.Deliver(context.Background(), "dsn.example", env, source(testMsg))
	wantCodes(t, att, "250 2.0.0", "250 2.0.0", "250 2.0.0")
	if !att.DSN {
		t.Errorf("Attempt.DSN = false with a DSN-capable remote")
	}
	_, _, _, msgs := dsn.snapshot()
	m := msgs[0]
	if m.opts.Return != smtp.DSNReturnHeaders || m.opts.EnvelopeID != "Q123" {
		t.Errorf("MAIL options = %+v", m.opts)
	}
	r0 := m.ropts[0]
	if len(r0.Notify) != 2 || r0.Notify[0] != smtp.DSNNotifyFailure || r0.Notify[1] != smtp.DSNNotifyDelayed ||
		r0.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || r0.OriginalRecipient != "b@dsn.example" {
		t.Errorf("RCPT 1 options = %+v", r0)
	}
	if len(m.ropts[1].Notify) != 0 || len(m.ropts[2].Notify) != 0 {
		t.Errorf("RCPT 2, 3 options = %+v %+v", m.ropts[1], m.ropts[2])
	}

	env.Recipients = []string{"b@plain.example"}
	att = c.Deliver(context.Background(), "plain.example", env, source(testMsg))
	wantCodes(t, att, "250 2.0.0")
	if att.DSN {
		t.Errorf("Attempt.DSN = true without DSN at the remote")
	}
	if _, _, _, msgs := plain.snapshot(); len(msgs) != 1 {
		t.Errorf("got %d messages", len(msgs))
	}
}

func TestBadAddresses(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org", "evil\r\nRSET@example.org", "x>@example.org")
	wantCodes(t, att, "250 2.0.0", "553 5.1.3", "553 5.1.3")
	att = deliver(t, c, "example.org", "a\r\n@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "553 5.1.7")
	// The connection survived both.
	if conns, mails, rcpts, msgs := rcv.snapshot(); conns != 1 || mails != 1 || rcpts != 1 || len(msgs) != 1 {
		t.Errorf("conns=%d mails=%d rcpts=%d msgs=%d", conns, mails, rcpts, len(msgs))
	}
	if att := deliver(t, c, "example.org", "a@sender.test", testMsg); len(att.Results) != 0 {
		t.Errorf("no recipients: %+v", att)
	}
}

func TestContextCancelled(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	rcv.dataDelay = 3 * time.Second
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	att := c.Deliver(ctx, "example.org", Envelope{From: "a@sender.test", Recipients: []string{"b@example.org"}}, source(testMsg))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Deliver took %v after cancellation", d)
	}
	wantCodes(t, att, "451 4.4.2")
	if len(c.pool.idle) != 0 {
		t.Errorf("an interrupted connection was pooled")
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTranscriptRedactsAuth(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	cert, _ := testCert(t, "relay.test")
	rcv := startReceiver(t, "127.0.0.1", port,
		withTLS(&tls.Config{Certificates: []tls.Certificate{cert}}), withAuth("postern", "s3cret"))
	var logs syncBuffer
	c := newCourier(t, 1, zone("unrelated.test. A 192.0.2.1"), func(cfg *Config) {
		cfg.RelayHost = rcv.addr
		cfg.RelayUser, cfg.RelayPassword = "postern", "s3cret"
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	wantCodes(t, deliver(t, c, "faraway.example", "a@sender.test", testMsg, "x@faraway.example"), "250 2.0.0")
	out := logs.String()
	plain := base64.StdEncoding.EncodeToString([]byte("\x00postern\x00s3cret"))
	for _, secret := range []string{"s3cret", plain, "Hello."} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"EHLO mail.sender.test", "STARTTLS", "TLS handshake done", "AUTH PLAIN <redacted>", "RCPT TO:<x@faraway.example>", "status=sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestIdleConnectionExpiresAndCloseQuits(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	c.pool.ttl = 100 * time.Millisecond
	logouts := func() int {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.logouts
	}
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	if n := logouts(); n != 0 {
		t.Fatalf("connection closed at once (%d)", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for logouts() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := logouts(); n != 1 {
		t.Fatalf("idle connection not closed after its time: %d logouts", n)
	}
	c.pool.ttl = time.Minute
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	if conns, _, _, _ := rcv.snapshot(); conns != 2 {
		t.Errorf("conns = %d, want 2", conns)
	}
	c.Close()
	deadline = time.Now().Add(3 * time.Second)
	for logouts() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := logouts(); n != 2 {
		t.Errorf("Close left the idle connection open: %d logouts", n)
	}
	// Deliveries still work after Close, without pooling.
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	if len(c.pool.idle) != 0 {
		t.Errorf("pool kept a connection after Close")
	}
}

func TestAddressLiteral(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("unrelated.test. A 192.0.2.1"))
	wantCodes(t, deliver(t, c, "[127.0.0.1]", "a@sender.test", testMsg, "b@[127.0.0.1]"), "250 2.0.0")
	if _, _, _, msgs := rcv.snapshot(); len(msgs) != 1 || msgs[0].rcpts[0] != "b@[127.0.0.1]" {
		t.Errorf("messages = %+v", msgs)
	}
	wantCodes(t, deliver(t, c, "[IPv6:::1]", "a@sender.test", testMsg, "b@[IPv6:::1]"), "451 4.4.1")
	wantCodes(t, deliver(t, c, "[999.1.1.1]", "a@sender.test", testMsg, "b@[999.1.1.1]"), "550 5.1.2")
}
