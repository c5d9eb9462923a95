package auth

import (
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	hash, err := hashWith("secret", Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(2, time.Minute)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	for i := 0; i < 2; i++ {
		if ok, err := c.Check(hash, "secret"); !ok || err != nil {
			t.Fatalf("check %d: %v %v", i, ok, err)
		}
	}
	if len(c.m) != 1 {
		t.Fatalf("%d entries", len(c.m))
	}
	if ok, _ := c.Check(hash, "wrong"); ok {
		t.Fatal("wrong password accepted")
	}
	if len(c.m) != 1 {
		t.Fatal("a failure was cached")
	}
	// A new hash (password changed) does not match the old entry.
	hash2, _ := hashWith("other", Params{Memory: 64, Time: 1, Threads: 1})
	if ok, _ := c.Check(hash2, "secret"); ok {
		t.Fatal("old password accepted against a new hash")
	}
	now = now.Add(2 * time.Minute)
	if ok, _ := c.Check(hash, "secret"); !ok {
		t.Fatal("expired entry not rechecked")
	}
	for _, pw := range []string{"a", "b", "c"} {
		h, _ := hashWith(pw, Params{Memory: 64, Time: 1, Threads: 1})
		c.Check(h, pw)
	}
	if len(c.m) > 2 {
		t.Fatalf("cache grew to %d", len(c.m))
	}
}
