package queue

import (
	"context"
	"sync/atomic"
	"time"
)

type atomicQueue struct{ p atomic.Pointer[Queue] }

// stats returns the number of entries and the age of the oldest.
func (a *atomicQueue) stats() (int, time.Duration) {
	q := a.p.Load()
	if q == nil {
		return 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, oldest, err := q.st.QueueStats(ctx)
	if err != nil || n == 0 {
		return 0, 0
	}
	return n, q.cfg.Now().Sub(oldest)
}
