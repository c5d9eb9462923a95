package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/courier"
	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
	"github.com/postern-mail/postern/internal/msgauth"
	"github.com/postern-mail/postern/internal/queue"
	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// Mail that the outbound path signs arrives at another Postern's MX (with
// its sender checks) with dkim=pass for both signatures, spf=pass (MAIL
// FROM and HELO) and dmarc=pass, against the records dns-records prints.
func TestOutboundSignedPassesInboundChecks(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Sender side: example.org's keys.
	keys := msgauth.NewKeyStore(filepath.Join(t.TempDir(), "dkim"))
	active, err := keys.Ensure("example.org")
	if err != nil {
		t.Fatal(err)
	}
	// Exactly the records `postern dns-records example.org` prints, and
	// the hostname's address.
	recs, err := msgauth.Records("example.org", "mail.example.org", active, msgauth.Services{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	zone := []string{"mail.example.org. A 127.0.0.1"}
	for _, r := range recs {
		if !r.Placeholder {
			zone = append(zone, r.Zone())
		}
	}
	res := dnsx.New(dnstest.Start(t, dnstest.Zone(t, zone...)), 2*time.Second)

	// Receiving side: remote.test's MX with sender checks.
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddDomain(ctx, "remote.test"); err != nil {
		t.Fatal(err)
	}
	bob, err := st.AddUser(ctx, "bob@remote.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	mx := smtpd.New(smtpd.Config{
		Hostname: "mx.remote.test", MaxMessageBytes: 1 << 20, MaxRecipients: 10, MaxConnections: 10, MaxConnectionsPerIP: 10,
		MaxLineLength: 2000, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second, Logger: quiet,
		Checker: senderChecker{msgauth.New(msgauth.Config{Hostname: "mx.remote.test", Resolver: res})},
	}, st)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go mx.Serve(l)
	defer mx.Shutdown(ctx)

	// The transport, relaying to that MX.
	c := courier.New(courier.Config{Hostname: "mail.example.org", Resolver: res, RelayHost: l.Addr().String(),
		ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, MaxPerDomain: 1, Logger: quiet})
	defer c.Close()
	tr := courierTransport{c: c, log: quiet, dkim: &msgauth.Signer{Keys: keys,
		IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }}}
	msg := "From: Alice <alice@example.org>\r\nTo: <bob@remote.test>\r\nSubject: signed on the way out\r\n" +
		"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <out-1@example.org>\r\n\r\nHello Bob.\r\n"
	opens := 0
	open := func() (io.ReadCloser, error) { opens++; return io.NopCloser(strings.NewReader(msg)), nil }
	att := tr.Deliver(ctx, "remote.test", queue.Envelope{From: "alice@example.org", Recipients: []string{"bob@remote.test"},
		Notify: []string{""}, ORcpt: []string{""}, Size: int64(len(msg))}, open)
	if len(att.Results) != 1 || att.Results[0].Code != 250 {
		t.Fatalf("attempt: %+v", att)
	}

	mb, err := st.MailboxByName(ctx, bob.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.Entries(ctx, mb.ID)
	if err != nil || len(entries) != 1 {
		t.Fatalf("bob's INBOX: %v %v", entries, err)
	}
	r, err := st.OpenEntry(ctx, mb.ID, entries[0].UID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	got := string(b)
	for _, want := range []string{
		"Authentication-Results: mx.remote.test;\r\n\tspf=pass smtp.mailfrom=alice@example.org;\r\n\tspf=pass smtp.helo=mail.example.org;\r\n",
		fmt.Sprintf("\tdkim=pass header.d=example.org header.s=%s header.a=ed25519-sha256", active[0].Selector),
		fmt.Sprintf("\tdkim=pass header.d=example.org header.s=%s header.a=rsa-sha256", active[1].Selector),
		"\tdmarc=pass (p=quarantine dis=none) header.from=example.org\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "DKIM-Signature:") != 2 || !strings.HasSuffix(got, msg) {
		t.Errorf("delivered message:\n%s", got)
	}
	if opens != 1 {
		t.Errorf("message opened %d times for signing and sending, want once", opens)
	}
	if !att.Signed || strings.Count(att.Signature, "DKIM-Signature:") != 2 || !strings.HasPrefix(got[strings.Index(got, "DKIM-Signature:"):], att.Signature) {
		t.Fatalf("attempt kept signature %v %q", att.Signed, att.Signature)
	}

	// A retry puts the kept fields in front of the message, signing nothing.
	att2 := tr.Deliver(ctx, "remote.test", queue.Envelope{From: "alice@example.org", Recipients: []string{"bob@remote.test"},
		Notify: []string{""}, ORcpt: []string{""}, Size: int64(len(msg)), Signature: att.Signature, SignatureDone: true}, open)
	if len(att2.Results) != 1 || att2.Results[0].Code != 250 || att2.Signed {
		t.Fatalf("retry: %+v", att2)
	}
	entries, _ = st.Entries(ctx, mb.ID)
	r, err = st.OpenEntry(ctx, mb.ID, entries[1].UID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r)
	r.Close()
	if !strings.HasSuffix(string(b), att.Signature+msg) {
		t.Errorf("retried message:\n%s", b)
	}
	if opens != 2 {
		t.Errorf("message opened %d times in all, want 2", opens)
	}

	// After dkim-rotate and --retire the kept fields name keys no longer
	// in DNS: the next retry signs again, with the new keys.
	if _, err := keys.Rotate("example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Retire("example.org"); err != nil {
		t.Fatal(err)
	}
	newKeys, _ := keys.Active("example.org")
	att3 := tr.Deliver(ctx, "remote.test", queue.Envelope{From: "alice@example.org", Recipients: []string{"bob@remote.test"},
		Notify: []string{""}, ORcpt: []string{""}, Size: int64(len(msg)), Signature: att.Signature, SignatureDone: true}, open)
	if len(att3.Results) != 1 || att3.Results[0].Code != 250 || !att3.Signed || att3.Signature == att.Signature {
		t.Fatalf("retry after retirement: signed %v, results %+v", att3.Signed, att3.Results)
	}
	for _, k := range newKeys {
		if !strings.Contains(att3.Signature, "s="+k.Selector+";") {
			t.Errorf("new signature does not use %s: %q", k.Selector, att3.Signature)
		}
	}
}

// The attempts for a message's domains, run at once, sign it once.
func TestSignaturesSharedAmongDomains(t *testing.T) {
	var s signatures
	var mu sync.Mutex
	signs := 0
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.get("qid1", func() (string, error) {
				mu.Lock()
				signs++
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				return "DKIM-Signature: x\r\n", nil
			})
			if err != nil || got != "DKIM-Signature: x\r\n" {
				t.Errorf("get = %q, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if signs != 1 {
		t.Errorf("signed %d times", signs)
	}
	// A failure is not kept: the next attempt signs again.
	if _, err := s.get("qid2", func() (string, error) { return "", errors.New("no key") }); err == nil {
		t.Fatal("no error")
	}
	if got, err := s.get("qid2", func() (string, error) { return "ok", nil }); got != "ok" || err != nil {
		t.Errorf("after a failure: %q, %v", got, err)
	}
	// Bounded.
	for i := 0; i < 2*maxSharedSignatures; i++ {
		s.get(fmt.Sprint(i), func() (string, error) { return "", nil })
	}
	if len(s.m) > maxSharedSignatures {
		t.Errorf("%d kept", len(s.m))
	}
}
