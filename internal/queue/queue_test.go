package queue

import (
	"context"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// fakeTransport answers each attempt with a scripted function and records
// what it was asked to deliver.
type fakeTransport struct {
	mu     sync.Mutex
	calls  []call
	answer func(n int, domain string, rcpt string) (int, string)
	sign   string // when set, "signs" a message not signed yet: this and its queue ID
}

type call struct {
	domain string
	env    Envelope
	body   string
}

func (f *fakeTransport) Deliver(ctx context.Context, domain string, env Envelope, open func() (io.ReadCloser, error)) Attempt {
	r, err := open()
	body := ""
	if err == nil {
		b, _ := io.ReadAll(r)
		r.Close()
		body = string(b)
	}
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, call{domain, env, body})
	f.mu.Unlock()
	att := Attempt{Host: "mx." + domain, IP: "127.0.0.1", TLS: "TLS 1.3 TLS_AES_128_GCM_SHA256"}
	if f.sign != "" && !env.SignatureDone {
		att.Signature, att.Signed = f.sign+env.QueueID+"\r\n", true
	}
	for _, rc := range env.Recipients {
		code, enh := f.answer(n, domain, rc)
		att.Results = append(att.Results, Result{Recipient: rc, Code: code, Enhanced: enh, Text: "scripted"})
	}
	return att
}

func (f *fakeTransport) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

type env struct {
	t     *testing.T
	st    *sqlite.Store
	tr    *fakeTransport
	alice store.User
	q     *Queue
	stop  func()
}

func setup(t *testing.T, cfg Config, answer func(n int, domain, rcpt string) (int, string)) *env {
	t.Helper()
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	st.AddDomain(ctx, "local.test")
	alice, err := st.AddUser(ctx, "alice@local.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, tr: &fakeTransport{answer: answer}, alice: alice}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.local.test"
	}
	if cfg.Retry == nil {
		cfg.Retry = []time.Duration{20 * time.Millisecond}
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = time.Hour
	}
	if cfg.DelayWarning == 0 {
		cfg.DelayWarning = time.Hour
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e.start(cfg)
	return e
}

func (e *env) start(cfg Config) {
	e.q = New(cfg, e.st, e.st, e.tr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.q.Run(ctx); close(done) }()
	e.stop = func() { cancel(); <-done }
	e.t.Cleanup(func() { e.stop() })
}

// send queues a message from from to the remote recipients.
func (e *env) send(from string, rcpts ...string) string {
	e.t.Helper()
	bw, _ := e.st.NewBlob()
	io.WriteString(bw, "From: <"+from+">\r\nSubject: outbound\r\nMessage-ID: <m1@local.test>\r\n\r\nhello\r\n")
	d := &store.Delivery{Blob: bw, From: from}
	for _, r := range rcpts {
		d.Remote = append(d.Remote, store.RemoteRecipient{Address: r})
	}
	if err := e.st.Deliver(context.Background(), d); err != nil {
		e.t.Fatal(err)
	}
	return bw.QueueID()
}

func (e *env) waitEmpty() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second) // generous: CI machines are shared
	for time.Now().Before(deadline) {
		es, _ := e.st.QueueEntries(context.Background())
		if len(es) == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	es, _ := e.st.QueueEntries(context.Background())
	e.t.Fatalf("queue not empty: %+v", es)
}

func (e *env) inbox() []string {
	e.t.Helper()
	ctx := context.Background()
	mb, _ := e.st.MailboxByName(ctx, e.alice.ID, "INBOX")
	es, _ := e.st.Entries(ctx, mb.ID)
	var out []string
	for _, en := range es {
		r, _ := e.st.OpenEntry(ctx, mb.ID, en.UID)
		b, _ := io.ReadAll(r)
		r.Close()
		out = append(out, string(b))
	}
	return out
}

// parseDSN checks the RFC 3464 structure and returns the per-recipient fields.
func parseDSN(t *testing.T, raw string) (human string, perMsg map[string]string, perRcpt []map[string]string, original string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Return-Path") != "<>" {
		t.Errorf("DSN Return-Path %q, want <>", m.Header.Get("Return-Path"))
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q %v", mt, params)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []string
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, string(b))
		types = append(types, p.Header.Get("Content-Type"))
	}
	if len(parts) != 3 || !strings.HasPrefix(types[0], "text/plain") || types[1] != "message/delivery-status" {
		t.Fatalf("DSN parts %v", types)
	}
	groups := strings.Split(strings.TrimSpace(strings.ReplaceAll(parts[1], "\r\n", "\n")), "\n\n")
	parse := func(g string) map[string]string {
		f := map[string]string{}
		for _, line := range strings.Split(g, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok {
				f[k] = strings.TrimSpace(v)
			}
		}
		return f
	}
	perMsg = parse(groups[0])
	for _, g := range groups[1:] {
		perRcpt = append(perRcpt, parse(g))
	}
	return parts[0], perMsg, perRcpt, parts[2]
}

func TestDeliversGroupedByDomain(t *testing.T) {
	e := setup(t, Config{}, func(n int, d, r string) (int, string) { return 250, "2.0.0" })
	qid := e.send("alice@local.test", "bob@remote.test", "carol@Remote.test", "dave@other.test")
	e.waitEmpty()
	if e.tr.callCount() != 2 {
		t.Fatalf("%d transactions, want 2 (one per domain)", e.tr.callCount())
	}
	for _, c := range e.tr.calls {
		switch c.domain {
		case "remote.test":
			if len(c.env.Recipients) != 2 || c.env.From != "alice@local.test" {
				t.Errorf("remote.test envelope %+v", c.env)
			}
		case "other.test":
			if len(c.env.Recipients) != 1 {
				t.Errorf("other.test envelope %+v", c.env)
			}
		default:
			t.Errorf("unexpected domain %q", c.domain)
		}
		if !strings.HasSuffix(c.body, "\r\n\r\nhello\r\n") {
			t.Errorf("body sent %q", c.body)
		}
	}
	evs, err := e.st.Events(context.Background(), qid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Kind == "delivered" {
			n++
			if !strings.Contains(ev.Detail, "tls=") || !strings.Contains(ev.Detail, "host=mx.") {
				t.Errorf("delivered event lacks host/TLS: %s", ev.Detail)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d delivered events, want 3: %+v", n, evs)
	}
	if len(e.inbox()) != 0 {
		t.Error("a DSN was sent for a successful delivery without NOTIFY=SUCCESS")
	}
}

func TestTemporaryFailureThenSuccess(t *testing.T) {
	e := setup(t, Config{}, func(n int, d, r string) (int, string) {
		if n < 2 {
			return 451, "4.3.0"
		}
		return 250, "2.0.0"
	})
	qid := e.send("alice@local.test", "bob@remote.test")
	e.waitEmpty()
	if e.tr.callCount() != 3 {
		t.Fatalf("%d attempts, want 3", e.tr.callCount())
	}
	evs, _ := e.st.Events(context.Background(), qid)
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	if got := strings.Join(kinds, ","); got != "deferred,deferred,delivered" {
		t.Errorf("events %s", got)
	}
	if len(e.inbox()) != 0 {
		t.Error("DSN sent although delivered before delay_warning")
	}
}

func TestPermanentFailureBouncesToLocalSender(t *testing.T) {
	e := setup(t, Config{}, func(n int, d, r string) (int, string) {
		if strings.HasPrefix(r, "nobody") {
			return 550, "5.1.1"
		}
		return 250, "2.0.0"
	})
	e.send("alice@local.test", "nobody@remote.test", "bob@remote.test")
	e.waitEmpty()
	inbox := e.inbox()
	if len(inbox) != 1 {
		t.Fatalf("alice has %d messages, want 1 DSN", len(inbox))
	}
	human, perMsg, perRcpt, original := parseDSN(t, inbox[0])
	if !strings.Contains(human, "nobody@remote.test") || strings.Contains(human, "bob@remote.test") {
		t.Errorf("human part names the wrong recipients: %q", human)
	}
	if perMsg["Reporting-MTA"] != "dns; mx.local.test" || perMsg["Arrival-Date"] == "" {
		t.Errorf("per-message fields %v", perMsg)
	}
	if len(perRcpt) != 1 {
		t.Fatalf("%d recipient groups, want 1 (only the failed one)", len(perRcpt))
	}
	f := perRcpt[0]
	for k, want := range map[string]string{"Final-Recipient": "rfc822; nobody@remote.test", "Action": "failed", "Status": "5.1.1",
		"Remote-MTA": "dns; mx.remote.test", "Diagnostic-Code": "smtp; 550 5.1.1 scripted"} {
		if f[k] != want {
			t.Errorf("%s = %q, want %q", k, f[k], want)
		}
	}
	if f["Last-Attempt-Date"] == "" {
		t.Error("no Last-Attempt-Date")
	}
	if !strings.Contains(original, "Subject: outbound") || strings.Contains(original, "hello") {
		t.Errorf("third part should be the original headers only: %q", original)
	}
}

func TestNeverBounceABounce(t *testing.T) {
	e := setup(t, Config{}, func(n int, d, r string) (int, string) { return 550, "5.1.1" })
	e.send("", "postmaster@remote.test")
	e.waitEmpty()
	time.Sleep(50 * time.Millisecond)
	if e.tr.callCount() != 1 {
		t.Errorf("%d attempts, want 1 (no bounce of the bounce queued)", e.tr.callCount())
	}
	if len(e.inbox()) != 0 {
		t.Error("a DSN was generated for a message from <>")
	}
}

func TestRemoteSenderGetsDSNThroughQueue(t *testing.T) {
	e := setup(t, Config{}, func(n int, d, r string) (int, string) {
		if d == "remote.test" {
			return 550, "5.1.1"
		}
		return 250, "2.0.0"
	})
	e.send("someone@sender.test", "nobody@remote.test")
	e.waitEmpty()
	if e.tr.callCount() != 2 {
		t.Fatalf("%d transactions, want the failed one and the DSN", e.tr.callCount())
	}
	dsn := e.tr.calls[1]
	if dsn.domain != "sender.test" || dsn.env.From != "" || dsn.env.Recipients[0] != "someone@sender.test" {
		t.Errorf("DSN envelope %+v to %s", dsn.env, dsn.domain)
	}
	if !strings.Contains(dsn.body, "report-type=delivery-status") {
		t.Errorf("DSN body %q", dsn.body)
	}
}

func TestDelayWarningOnceThenExpiry(t *testing.T) {
	e := setup(t, Config{DelayWarning: time.Nanosecond, MaxLifetime: 300 * time.Millisecond, Retry: []time.Duration{30 * time.Millisecond}},
		func(n int, d, r string) (int, string) { return 421, "4.4.2" })
	e.send("alice@local.test", "bob@remote.test")
	e.waitEmpty()
	inbox := e.inbox()
	if len(inbox) != 2 {
		t.Fatalf("alice has %d messages, want a delay DSN and a failure DSN", len(inbox))
	}
	_, _, r1, _ := parseDSN(t, inbox[0])
	_, _, r2, _ := parseDSN(t, inbox[1])
	if r1[0]["Action"] != "delayed" || r1[0]["Status"] != "4.4.2" || r1[0]["Will-Retry-Until"] == "" {
		t.Errorf("first DSN %v, want delayed 4.4.2 with Will-Retry-Until", r1[0])
	}
	if r2[0]["Action"] != "failed" || r2[0]["Status"] != "5.4.2" {
		t.Errorf("second DSN %v, want failed 5.4.2 (expired)", r2[0])
	}
	if e.tr.callCount() < 3 {
		t.Errorf("only %d attempts before expiry", e.tr.callCount())
	}
}

func TestRestartKeepsQueue(t *testing.T) {
	var fail sync.Mutex
	failing := true
	e := setup(t, Config{Retry: []time.Duration{time.Hour}}, func(n int, d, r string) (int, string) {
		fail.Lock()
		defer fail.Unlock()
		if failing {
			return 451, "4.4.1"
		}
		return 250, "2.0.0"
	})
	e.send("alice@local.test", "bob@remote.test")
	deadline := time.Now().Add(5 * time.Second)
	for e.tr.callCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	e.stop()
	es, _ := e.st.QueueEntries(context.Background())
	if len(es) != 1 || es[0].Attempts != 1 || es[0].LastError == "" {
		t.Fatalf("after one failed attempt: %+v", es)
	}
	fail.Lock()
	failing = false
	fail.Unlock()
	// A new runner (after a restart) sees the entry; retry makes it due now.
	e.start(Config{Hostname: "mx.local.test", Retry: []time.Duration{time.Hour}, MaxLifetime: time.Hour, DelayWarning: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if n, err := e.st.RetryEntries(context.Background(), nil); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	e.waitEmpty()
	if e.tr.callCount() != 2 {
		t.Errorf("%d attempts, want 2", e.tr.callCount())
	}
}

func TestHeldEntriesWait(t *testing.T) {
	e := setup(t, Config{}, func(n int, d, r string) (int, string) { return 250, "2.0.0" })
	e.stop()
	e.send("alice@local.test", "bob@remote.test")
	es, _ := e.st.QueueEntries(context.Background())
	if n, _ := e.st.HoldEntries(context.Background(), []int64{es[0].ID}, true); n != 1 {
		t.Fatal("hold failed")
	}
	e.start(Config{Hostname: "h", Retry: []time.Duration{time.Millisecond}, MaxLifetime: time.Hour, DelayWarning: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	time.Sleep(100 * time.Millisecond)
	if e.tr.callCount() != 0 {
		t.Fatal("a held entry was attempted")
	}
	e.st.HoldEntries(context.Background(), []int64{es[0].ID}, false)
	e.waitEmpty()
}

// TestRetryKeepsRecipientsTogether: after a temporary failure the
// recipients of one domain are retried together, in one transaction, not
// each on its own jittered schedule.
func TestRetryKeepsRecipientsTogether(t *testing.T) {
	e := setup(t, Config{Retry: []time.Duration{200 * time.Millisecond}}, func(n int, domain, rcpt string) (int, string) {
		if n < 2 {
			return 451, "4.4.1"
		}
		return 250, "2.0.0"
	})
	e.send("alice@local.test", "a@remote.test", "b@remote.test", "c@remote.test")
	e.waitEmpty()
	e.tr.mu.Lock()
	defer e.tr.mu.Unlock()
	if len(e.tr.calls) != 3 {
		t.Fatalf("%d attempts, want 3 (two failures, then one success)", len(e.tr.calls))
	}
	for i, c := range e.tr.calls {
		if len(c.env.Recipients) != 3 {
			t.Errorf("attempt %d had recipients %v, want all three", i+1, c.env.Recipients)
		}
	}
}

// The signature the first attempt made is handed to the retries, for all
// the message's domains.
func TestSignatureKeptForRetries(t *testing.T) {
	cfg := Config{Hostname: "mx.local.test", Retry: []time.Duration{time.Millisecond}, MaxLifetime: time.Hour, DelayWarning: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	e := setup(t, cfg, func(n int, d, r string) (int, string) {
		if n < 4 {
			return 451, "4.3.0"
		}
		return 250, "2.0.0"
	})
	e.stop()
	e.tr.sign = "DKIM-Signature: "
	e.start(cfg)
	qid := e.send("alice@local.test", "bob@one.test", "carol@two.test")
	e.waitEmpty()
	e.tr.mu.Lock()
	defer e.tr.mu.Unlock()
	want := "DKIM-Signature: " + qid + "\r\n"
	fresh := map[string]int{}
	for i, c := range e.tr.calls {
		if !c.env.SignatureDone {
			// A first attempt (one per domain at most: they may run
			// before either has kept its signature).
			if fresh[c.domain]++; fresh[c.domain] > 1 {
				t.Errorf("call %d (%s): signed again", i, c.domain)
			}
			continue
		}
		if c.env.Signature != want {
			t.Errorf("call %d (%s): signature %q, want %q", i, c.domain, c.env.Signature, want)
		}
	}
	if len(e.tr.calls) < 4 {
		t.Errorf("%d calls", len(e.tr.calls))
	}
}
