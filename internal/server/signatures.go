package server

import (
	"sync"
)

// maxSharedSignatures bounds how many messages' signatures are kept in
// memory; the queue keeps them for retries, this only spans the attempts
// for a message's domains that run at the same time.
const maxSharedSignatures = 1024

// signatures shares the DKIM signing of a message among the attempts for
// its recipient domains, which the queue runs at once: the first signs,
// the others wait for its result. A failed signing is not kept.
type signatures struct {
	mu    sync.Mutex
	m     map[string]*signing // by queue ID
	order []string            // oldest first, for eviction
}

type signing struct {
	done   chan struct{}
	fields string
	err    error
}

// get returns the signature fields of the message named qid, calling sign
// unless another attempt has done or is doing it.
func (s *signatures) get(qid string, sign func() (string, error)) (string, error) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*signing{}
	}
	if g := s.m[qid]; g != nil {
		s.mu.Unlock()
		<-g.done
		return g.fields, g.err
	}
	g := &signing{done: make(chan struct{})}
	s.m[qid] = g
	s.order = append(s.order, qid)
	for len(s.order) > maxSharedSignatures {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
	s.mu.Unlock()

	g.fields, g.err = sign()
	close(g.done)
	if g.err != nil {
		s.mu.Lock()
		if s.m[qid] == g {
			delete(s.m, qid)
		}
		s.mu.Unlock()
	}
	return g.fields, g.err
}
