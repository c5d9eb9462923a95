package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// Cache remembers recent successful password checks so that clients that
// log in constantly (every poll, every connection) do not pay for argon2id
// each time. Entries are keyed by a keyed hash (HMAC-SHA256 with a random
// per-process key) of the stored hash and the password: a password change
// changes the stored hash, so old entries never match again. Failed checks
// are never cached. Entries expire after TTL; at most Max are kept.
type Cache struct {
	ttl time.Duration
	max int
	key [32]byte
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]time.Time
}

// NewCache returns a cache of at most max entries living ttl each.
func NewCache(max int, ttl time.Duration) *Cache {
	c := &Cache{ttl: ttl, max: max, now: time.Now, m: map[[32]byte]time.Time{}}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic(err)
	}
	return c
}

func (c *Cache) entry(hash, password string) [32]byte {
	mac := hmac.New(sha256.New, c.key[:])
	mac.Write([]byte(hash))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	copy(k[:], mac.Sum(nil))
	return k
}

// Check is CheckPassword with the cache in front.
func (c *Cache) Check(hash, password string) (bool, error) {
	k := c.entry(hash, password)
	now := c.now()
	c.mu.Lock()
	exp, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Before(exp) {
		return true, nil
	}
	good, err := CheckPassword(hash, password)
	if err != nil || !good {
		return good, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if !now.Before(e) || len(c.m) >= c.max {
				delete(c.m, key)
			}
			if len(c.m) < c.max*3/4 {
				break
			}
		}
	}
	c.m[k] = now.Add(c.ttl)
	return true, nil
}
