package courier

import (
	"sync"
	"time"
)

// pool keeps idle connections by host address for a short while, so that
// the next message to the same host skips the connect, greeting, EHLO and
// TLS handshake.
type pool struct {
	ttl     time.Duration
	maxIdle int // per address
	mu      sync.Mutex
	idle    map[string][]*idleConn
	closed  bool
}

type idleConn struct {
	cn    *conn
	timer *time.Timer
}

func newPool(ttl time.Duration, maxIdle int) *pool {
	return &pool{ttl: ttl, maxIdle: maxIdle, idle: map[string][]*idleConn{}}
}

// get takes the most recently used idle connection for key, or nil.
func (p *pool) get(key string) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		ic := list[len(list)-1]
		list = list[:len(list)-1]
		if ic.timer.Stop() {
			p.set(key, list)
			return ic.cn
		}
		// Its timer fired: it is being closed.
	}
	p.set(key, list)
	return nil
}

// put keeps cn idle for the pool's ttl, then says QUIT and closes it.
func (p *pool) put(cn *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[cn.key]) >= p.maxIdle {
		go quit(cn)
		return
	}
	cn.idleSince = time.Now()
	ic := &idleConn{cn: cn}
	ic.timer = time.AfterFunc(p.ttl, func() {
		p.mu.Lock()
		list := p.idle[cn.key]
		for i, x := range list {
			if x == ic {
				p.set(cn.key, append(list[:i:i], list[i+1:]...))
				break
			}
		}
		p.mu.Unlock()
		quit(cn)
	})
	p.idle[cn.key] = append(p.idle[cn.key], ic)
}

func (p *pool) set(key string, list []*idleConn) {
	if len(list) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list
	}
}

// close quits every idle connection and keeps no more.
func (p *pool) close() {
	p.mu.Lock()
	var all []*conn
	for _, list := range p.idle {
		for _, ic := range list {
			if ic.timer.Stop() {
				all = append(all, ic.cn)
			}
		}
	}
	p.idle = map[string][]*idleConn{}
	p.closed = true
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, cn := range all {
		wg.Add(1)
		go func() { defer wg.Done(); quit(cn) }()
	}
	wg.Wait()
}

// quit ends a session politely, bounded by a short deadline.
func quit(cn *conn) {
	cn.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := cn.c.Quit(); err != nil {
		cn.close()
	}
}
