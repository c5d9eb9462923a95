package imapd

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/postern-mail/postern/internal/store"
)

// BenchmarkMailbox100k measures, over a real connection, commands on a
// 100,000-message mailbox: SELECT (DESIGN.md's target: under 50 ms), FETCH
// 1:* (FLAGS) as clients send on every sync, SEARCH UNSEEN and SEARCH
// HEADER Subject (from the head cache after the first run).
func BenchmarkMailbox100k(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	mb, err := e.st.MailboxByName(ctx, e.user.ID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	const n, workers = 100000, 64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/workers; i++ {
				bw, err := e.st.NewBlob()
				if err != nil {
					b.Error(err)
					return
				}
				io.WriteString(bw, sampleMsg)
				flags := store.FlagSeen
				if i%10 == 0 {
					flags = 0
				}
				if _, _, err := e.st.AppendMessage(ctx, mb.ID, &store.Append{Blob: bw, Flags: flags}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	r := e.raw(b, true)
	r.login()
	r.ok("SELECT INBOX")
	for _, bc := range []struct{ name, cmd string }{
		{"select", "SELECT INBOX"},
		{"fetch-flags", "FETCH 1:* (FLAGS)"},
		{"search-unseen", "SEARCH UNSEEN"},
		{"search-header-subject", "UID SEARCH HEADER Subject needle"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r.ok("%s", bc.cmd)
			}
		})
	}
}
