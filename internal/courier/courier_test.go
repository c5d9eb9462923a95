package courier

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const testMsg = "From: a@sender.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\n"

func TestDeliverOneTransaction(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port, withMaxSize(1<<20))
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx.example.org.",
		"mx.example.org. A 127.0.0.1",
	))
	att := deliver(t, c, "Example.ORG", "a@sender.test", testMsg, "b@example.org", "c@example.org", "d@example.org")
	wantCodes(t, att, "250 2.0.0", "250 2.0.0", "250 2.0.0")
	if att.Host != "mx.example.org" || att.IP != "127.0.0.1" || att.TLS != "" || att.Domain != "example.org" {
		t.Errorf("attempt = %+v", att)
	}
	conns, mails, rcpts, msgs := rcv.snapshot()
	if conns != 1 || mails != 1 || rcpts != 3 || len(msgs) != 1 {
		t.Fatalf("conns=%d mails=%d rcpts=%d msgs=%d, want 1 1 3 1", conns, mails, rcpts, len(msgs))
	}
	m := msgs[0]
	if m.from != "a@sender.test" || strings.Join(m.rcpts, ",") != "b@example.org,c@example.org,d@example.org" {
		t.Errorf("envelope = %q %q", m.from, m.rcpts)
	}
	if !bytes.Equal(m.data, []byte(testMsg)) {
		t.Errorf("received %q, want %q", m.data, testMsg)
	}
	if m.opts.Size != int64(len(testMsg)) {
		t.Errorf("SIZE=%d, want %d", m.opts.Size, len(testMsg))
	}
}

func TestRecipientResults(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	rcv.rejectRcpt["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	rcv.rejectRcpt["later@example.org"] = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx.example.org.",
		"mx.example.org. A 127.0.0.1",
	))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org", "nobody@example.org", "later@example.org", "c@example.org")
	wantCodes(t, att, "250 2.0.0", "550 5.1.1", "451 4.2.0", "250 2.0.0")
	if !strings.Contains(att.Results[1].Text, "no such user") {
		t.Errorf("text = %q", att.Results[1].Text)
	}
	_, _, _, msgs := rcv.snapshot()
	if len(msgs) != 1 || strings.Join(msgs[0].rcpts, ",") != "b@example.org,c@example.org" {
		t.Fatalf("messages = %+v", msgs)
	}

	// All recipients refused: no DATA.
	att = deliver(t, c, "example.org", "a@sender.test", testMsg, "nobody@example.org")
	wantCodes(t, att, "550 5.1.1")
	if _, _, _, msgs := rcv.snapshot(); len(msgs) != 1 {
		t.Errorf("a message was sent with no accepted recipient")
	}
}

func TestDataRejected(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	rcv.rejectRcpt["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	rcv.dataErr = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org", "nobody@example.org", "c@example.org")
	wantCodes(t, att, "554 5.7.1", "550 5.1.1", "554 5.7.1")

	rcv.mu.Lock()
	rcv.dataErr = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "disk full"}
	rcv.mu.Unlock()
	att = deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "452 4.3.1")
}

func TestSecondMXWhenFirstDown(t *testing.T) {
	port := freePort(t, "127.0.0.3")
	rcv := startReceiver(t, "127.0.0.3", port)
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx1.example.org.",
		"example.org. MX 20 mx2.example.org.",
		"mx1.example.org. A 127.0.0.2", // nothing listens there
		"mx2.example.org. A 127.0.0.3",
	))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if att.Host != "mx2.example.org" || att.IP != "127.0.0.3" {
		t.Errorf("delivered via %s %s", att.Host, att.IP)
	}
	if _, _, _, msgs := rcv.snapshot(); len(msgs) != 1 {
		t.Errorf("second MX got %d messages", len(msgs))
	}
}

func TestNextIPAndNextMXOn4xxGreeting(t *testing.T) {
	port := freePort(t, "127.0.0.4", "127.0.0.6")
	busy := startReceiver(t, "127.0.0.4", port)
	busy.sessionErr = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "too busy"}
	rcv := startReceiver(t, "127.0.0.6", port)
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx1.example.org.",
		"example.org. MX 20 mx2.example.org.",
		"mx1.example.org. A 127.0.0.4",
		"mx1.example.org. A 127.0.0.5", // refused
		"mx2.example.org. A 127.0.0.6",
	))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if att.IP != "127.0.0.6" {
		t.Errorf("delivered via %s", att.IP)
	}
	if _, _, _, msgs := rcv.snapshot(); len(msgs) != 1 {
		t.Errorf("got %d messages", len(msgs))
	}
}

func TestAllMXDown(t *testing.T) {
	port := freePort(t)
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx1.example.org.",
		"mx1.example.org. A 127.0.0.2",
	))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org", "c@example.org")
	wantCodes(t, att, "451 4.4.1", "451 4.4.1")
	if !strings.Contains(att.Results[0].Text, "connection refused") {
		t.Errorf("text = %q", att.Results[0].Text)
	}
}

func TestImplicitMX(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. A 127.0.0.1"))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if att.Host != "example.org" {
		t.Errorf("host = %q", att.Host)
	}
	if _, _, _, msgs := rcv.snapshot(); len(msgs) != 1 {
		t.Errorf("got %d messages", len(msgs))
	}
}

func TestDNSFailures(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone(
		"nomail.example. MX 0 .",
		"nomail.example. A 127.0.0.1",
		"noaddr.example. TXT \"nothing\"",
		"broken.example. MX 10 mx.broken.example.",
		"mx.broken.example. A 127.0.0.1",
	))
	// SERVFAIL for a whole domain.
	srvfail := newCourierWithServFail(t, port)

	att := deliver(t, c, "nomail.example", "a@sender.test", testMsg, "b@nomail.example", "c@nomail.example")
	wantCodes(t, att, "556 5.1.10", "556 5.1.10")
	if att.Host != "" {
		t.Errorf("null MX: tried host %q", att.Host)
	}
	att = deliver(t, c, "missing.example", "a@sender.test", testMsg, "b@missing.example")
	wantCodes(t, att, "550 5.1.2")
	att = deliver(t, c, "noaddr.example", "a@sender.test", testMsg, "b@noaddr.example")
	wantCodes(t, att, "550 5.1.2")
	att = deliver(t, srvfail, "broken.example", "a@sender.test", testMsg, "b@broken.example")
	wantCodes(t, att, "451 4.4.3")
	if conns, _, _, _ := rcv.snapshot(); conns != 0 {
		t.Errorf("%d connections made", conns)
	}
}

func TestSTARTTLS(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	cert, roots := testCert(t, "mx.example.org")
	rcv := startReceiver(t, "127.0.0.1", port, withTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	z := zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1")

	// Self-signed: used, but not verified.
	c := newCourier(t, port, z)
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if !strings.HasPrefix(att.TLS, "TLS 1.3 TLS_") || att.Verified {
		t.Errorf("TLS = %q verified=%v", att.TLS, att.Verified)
	}
	// With its issuer trusted: verified.
	c2 := newCourier(t, port, z, func(cfg *Config) { cfg.RootCAs = roots })
	att = deliver(t, c2, "example.org", "a@sender.test", testMsg, "b@example.org")
	if att.TLS == "" || !att.Verified {
		t.Errorf("TLS = %q verified=%v", att.TLS, att.Verified)
	}
	_, _, _, msgs := rcv.snapshot()
	if len(msgs) != 2 || !msgs[0].tls || !msgs[1].tls || !bytes.Equal(msgs[0].data, []byte(testMsg)) {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestSTARTTLSFailureFallsBackToPlaintext(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port, withTLS(brokenTLS()))
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if att.TLS != "" {
		t.Errorf("TLS = %q", att.TLS)
	}
	conns, _, _, msgs := rcv.snapshot()
	if conns != 2 || len(msgs) != 1 || msgs[0].tls {
		t.Fatalf("conns=%d messages=%+v", conns, msgs)
	}
}

func TestLineEndsNormalized(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	src := "Subject: lf\n\nline1\nline2\rline3\r\r\n.dot\nlast\r"
	want := "Subject: lf\r\n\r\nline1\r\nline2\r\nline3\r\n\r\n.dot\r\nlast\r\n"
	att := deliver(t, c, "example.org", "a@sender.test", src, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	_, _, _, msgs := rcv.snapshot()
	if len(msgs) != 1 || string(msgs[0].data) != want {
		t.Fatalf("received %q, want %q", msgs[0].data, want)
	}
	// Without a final line end, one is added.
	deliver(t, c, "example.org", "a@sender.test", "Subject: x\n\nno end", "b@example.org")
	if _, _, _, msgs = rcv.snapshot(); string(msgs[1].data) != "Subject: x\r\n\r\nno end\r\n" {
		t.Fatalf("received %q", msgs[1].data)
	}
}

func TestConnectionReused(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	cert, _ := testCert(t, "mx.example.org")
	rcv := startReceiver(t, "127.0.0.1", port, withTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	rcv.rejectRcpt["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "nobody@example.org"), "550 5.1.1")
	att := deliver(t, c, "example.org", "x@sender.test", "Subject: 2\r\n\r\nsecond\r\n", "c@example.org")
	wantCodes(t, att, "250 2.0.0")
	if att.TLS == "" {
		t.Errorf("reused connection lost its TLS record")
	}
	conns, mails, _, msgs := rcv.snapshot()
	if conns != 1 || mails != 3 || len(msgs) != 2 {
		t.Fatalf("conns=%d mails=%d msgs=%d, want 1 3 2", conns, mails, len(msgs))
	}
	if msgs[1].from != "x@sender.test" || string(msgs[1].data) != "Subject: 2\r\n\r\nsecond\r\n" {
		t.Errorf("second message = %+v", msgs[1])
	}
	c.Close()
	// After Close, a new connection is made.
	c2 := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	deliver(t, c2, "example.org", "a@sender.test", testMsg, "b@example.org")
	if conns, _, _, _ := rcv.snapshot(); conns != 2 {
		t.Errorf("conns = %d, want 2", conns)
	}
}

// A pooled connection the remote has closed is replaced by a new one.
func TestStalePooledConnection(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	rcv.srv.Close()
	rcv2 := startReceiver(t, "127.0.0.1", port)
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	if conns, _, _, msgs := rcv2.snapshot(); conns != 1 || len(msgs) != 1 {
		t.Errorf("conns=%d msgs=%d", conns, len(msgs))
	}
}

func TestSmarthostAuthOverTLS(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	cert, _ := testCert(t, "relay.test")
	rcv := startReceiver(t, "127.0.0.1", port,
		withTLS(&tls.Config{Certificates: []tls.Certificate{cert}}), withAuth("postern", "s3cret"))
	// No DNS records at all: a smarthost needs no MX lookup.
	c := newCourier(t, 1, zone("unrelated.test. A 192.0.2.1"), func(cfg *Config) {
		cfg.RelayHost = rcv.addr
		cfg.RelayUser, cfg.RelayPassword = "postern", "s3cret"
	})
	att := deliver(t, c, "faraway.example", "a@sender.test", testMsg, "x@faraway.example", "y@faraway.example")
	wantCodes(t, att, "250 2.0.0", "250 2.0.0")
	if att.TLS == "" || att.IP != "127.0.0.1" {
		t.Errorf("attempt = %+v", att)
	}
	_, _, _, msgs := rcv.snapshot()
	if len(msgs) != 1 || msgs[0].auth != "postern" || !msgs[0].tls || len(msgs[0].rcpts) != 2 {
		t.Fatalf("messages = %+v", msgs)
	}

	// Wrong password: retry later, not a bounce.
	bad := newCourier(t, 1, zone("unrelated.test. A 192.0.2.1"), func(cfg *Config) {
		cfg.RelayHost = rcv.addr
		cfg.RelayUser, cfg.RelayPassword = "postern", "wrong"
	})
	wantCodes(t, deliver(t, bad, "faraway.example", "a@sender.test", testMsg, "x@faraway.example"), "454 4.7.0")
}

func TestSmarthostNoCredentialsWithoutTLS(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port, withAuth("postern", "s3cret"))
	rcv.srv.AllowInsecureAuth = true
	c := newCourier(t, 1, zone("unrelated.test. A 192.0.2.1"), func(cfg *Config) {
		cfg.RelayHost = rcv.addr
		cfg.RelayUser, cfg.RelayPassword = "postern", "s3cret"
	})
	att := deliver(t, c, "faraway.example", "a@sender.test", testMsg, "x@faraway.example")
	wantCodes(t, att, "454 4.7.0")
	if _, mails, _, _ := rcv.snapshot(); mails != 0 {
		t.Errorf("mail sent without authentication")
	}
}

func TestSMTPUTF8(t *testing.T) {
	port := freePort(t, "127.0.0.1", "127.0.0.2")
	plain := startReceiver(t, "127.0.0.1", port)
	utf8 := startReceiver(t, "127.0.0.2", port, withUTF8())
	c := newCourier(t, port, zone(
		"old.example. MX 10 mx.old.example.", "mx.old.example. A 127.0.0.1",
		"new.example. MX 10 mx.new.example.", "mx.new.example. A 127.0.0.2",
	))
	env := Envelope{From: "josé@sender.test", Recipients: []string{"zoë@old.example"}, UTF8: true}
	att := c.Deliver(context.Background(), "old.example", env, source(testMsg))
	wantCodes(t, att, "553 5.6.7")
	if _, mails, _, _ := plain.snapshot(); mails != 0 {
		t.Errorf("MAIL sent to a server without SMTPUTF8")
	}
	env.Recipients = []string{"zoë@new.example"}
	att = c.Deliver(context.Background(), "new.example", env, source(testMsg))
	wantCodes(t, att, "250 2.0.0")
	if _, _, _, msgs := utf8.snapshot(); len(msgs) != 1 || !msgs[0].opts.UTF8 || msgs[0].rcpts[0] != "zoë@new.example" {
		t.Errorf("messages = %+v", msgs)
	}
}

func TestPerDomainConcurrency(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	rcv.dataDelay = 150 * time.Millisecond
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1",
		"example.net. MX 10 mx.example.org.",
	), func(cfg *Config) { cfg.MaxPerDomain = 2 })
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
		}()
	}
	wg.Wait()
	rcv.mu.Lock()
	maxActive := rcv.maxActive
	rcv.maxActive = 0
	rcv.mu.Unlock()
	if maxActive != 2 {
		t.Errorf("at most %d deliveries at once to one domain, want 2", maxActive)
	}
	// Two domains sharing an MX each get their own limit.
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(d string) {
			defer wg.Done()
			wantCodes(t, deliver(t, c, d, "a@sender.test", testMsg, "b@"+d), "250 2.0.0")
		}([]string{"example.org", "example.net"}[i%2])
	}
	wg.Wait()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.maxActive != 4 {
		t.Errorf("at most %d deliveries at once to two domains, want 4", rcv.maxActive)
	}
	if len(c.sems) != 0 {
		t.Errorf("%d domain semaphores left", len(c.sems))
	}
}

func TestSourceUnreadable(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	open := func() (io.ReadCloser, error) { return nil, errors.New("blob gone") }
	att := c.Deliver(context.Background(), "example.org", Envelope{From: "a@sender.test", Recipients: []string{"b@example.org"}}, open)
	wantCodes(t, att, "451 4.3.0")
	// Failing in the middle of the message: the transaction is abandoned.
	open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\npart"), errReader{})), nil
	}
	att = c.Deliver(context.Background(), "example.org", Envelope{From: "a@sender.test", Recipients: []string{"b@example.org"}}, open)
	wantCodes(t, att, "451 4.3.0")
	time.Sleep(50 * time.Millisecond)
	if _, _, _, msgs := rcv.snapshot(); len(msgs) != 0 {
		t.Errorf("a truncated message was delivered: %q", msgs[0].data)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk error") }
