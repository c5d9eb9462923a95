package pop3d

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern-mail/postern/internal/imapd"
)

// TestIMAPSeesDeletions: a POP3 session's DELE reaches an IMAP session
// that has INBOX selected (in IDLE) as EXPUNGE, only after QUIT; and a
// message IMAP expunges during a POP3 session is answered with -ERR.
func TestIMAPSeesDeletions(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.deliver(t, sampleMsg)
	}
	isrv := imapd.New(imapd.Config{TLS: e.tlsConfig, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.st)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go isrv.ServeTLS(l)
	t.Cleanup(func() { isrv.Close() })

	var mu sync.Mutex
	var expunged []uint32
	seen := make(chan struct{}, 16)
	h := &imapclient.UnilateralDataHandler{Expunge: func(seq uint32) {
		mu.Lock()
		expunged = append(expunged, seq)
		mu.Unlock()
		seen <- struct{}{}
	}}
	ic, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}, UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := ic.Idle()
	if err != nil {
		t.Fatal(err)
	}

	c := e.login(t)
	c.ok("DELE 1")
	c.ok("DELE 3")
	select {
	case <-seen:
		t.Fatal("IMAP saw an EXPUNGE before QUIT")
	case <-time.After(200 * time.Millisecond):
	}
	c.ok("QUIT")
	for range 2 {
		select {
		case <-seen:
		case <-time.After(2 * time.Second):
			t.Fatal("IMAP session did not see the POP3 deletions within 2s")
		}
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(expunged) != 2 || expunged[0] != 1 || expunged[1] != 2 {
		t.Fatalf("EXPUNGE sequence numbers %v, want [1 2] (UIDs 1 and 3)", expunged)
	}
	mu.Unlock()
	st, err := ic.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Fatalf("IMAP STATUS INBOX: %+v %v, want 1 message", st, err)
	}

	// IMAP expunges the message a POP3 session still lists.
	c = e.login(t)
	if _, err := ic.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	c.fail("RETR 1", "removed by another session")
	c.ok("DELE 1")
	c.ok("QUIT") // expunging what is already gone is not an error
}
