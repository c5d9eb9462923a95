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
	es, err := q.st.QueueEntries(ctx)
	if err != nil || len(es) == 0 {
		return 0, 0
	}
	return len(es), q.cfg.Now().Sub(es[0].Created)
}
