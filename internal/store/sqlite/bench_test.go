package sqlite

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/postern-mail/postern/internal/blob"
	"github.com/postern-mail/postern/internal/store"
)

// BenchmarkDeliver10KiB20 delivers 10 KiB messages from 20 concurrent
// goroutines (like 20 SMTP sessions) and reports fsyncs per message:
// message-file and directory fsyncs counted by internal/blob, plus one WAL
// fsync per commit (SQLite synchronous=FULL; checkpoints not counted).
func BenchmarkDeliver10KiB20(b *testing.B) {
	s, _ := openTest(b)
	u := mustUser(b, s, "bench@example.org")
	body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"), 140)...)
	f0, c0 := blob.Fsyncs.Load(), Commits.Load()
	var failed atomic.Int64
	b.SetBytes(int64(len(body)))
	b.SetParallelism(10) // 10 x GOMAXPROCS(2) = 20 concurrent deliveries
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bw, err := s.NewBlob()
			if err != nil {
				failed.Add(1)
				continue
			}
			bw.Write(body)
			err = s.Deliver(context.Background(), &store.Delivery{Blob: bw, From: "a@example.org",
				Recipients: []store.LocalRecipient{{UserID: u.ID, Prefix: []byte("Delivered-To: bench@example.org\r\n")}}})
			if err != nil {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d deliveries failed", failed.Load())
	}
	fsyncs := float64(blob.Fsyncs.Load()-f0) + float64(Commits.Load()-c0)
	b.ReportMetric(fsyncs/float64(b.N), "fsyncs/msg")
	b.ReportMetric(float64(b.N)/float64(Commits.Load()-c0), "msgs/commit")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
