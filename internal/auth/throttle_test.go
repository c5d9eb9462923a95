package auth

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 3, MaxPerUser: 5, Window: time.Minute, Now: func() time.Time { return now }}
	for i := 0; i < 3; i++ {
		if !th.Allowed("1.2.3.4", "a@x") {
			t.Fatalf("refused after %d failures", i)
		}
		th.Failed("1.2.3.4", "a@x")
	}
	if th.Allowed("1.2.3.4", "b@x") {
		t.Fatal("IP not throttled")
	}
	if !th.Allowed("5.6.7.8", "a@x") {
		t.Fatal("other IP throttled for an account under its limit")
	}
	th.Failed("5.6.7.8", "a@x")
	th.Failed("9.9.9.9", "a@x")
	if th.Allowed("10.0.0.1", "a@x") {
		t.Fatal("account not throttled after 5 failures")
	}
	now = now.Add(61 * time.Second)
	if !th.Allowed("1.2.3.4", "a@x") {
		t.Fatal("still throttled after the window")
	}
	th.Failed("1.2.3.4", "a@x")
	th.Succeeded("1.2.3.4", "a@x")
	if len(th.failures["user:a@x"]) != 0 || len(th.failures["ip:1.2.3.4"]) != 1 {
		t.Fatalf("after success: %v", th.failures)
	}
}

// TestThrottleDelay: no delay below 5 failures (per IP or per account), then
// 1, 2, 3 ... steps up to the cap; the window forgets; a success forgets the
// account's failures but not the IP's.
func TestThrottleDelay(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 20, MaxPerUser: 100, Window: time.Minute, Now: func() time.Time { return now },
		DelayAfter: 5, DelayStep: time.Second, MaxDelay: 4 * time.Second}
	want := []time.Duration{0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4}
	for i, w := range want {
		if d := th.Delay("1.2.3.4", "a@x"); d != w*time.Second {
			t.Fatalf("after %d failures: delay %v, want %v", i, d, w*time.Second)
		}
		th.Failed("1.2.3.4", "a@x")
	}
	// The IP's failures delay any account; the account's delay any IP.
	if d := th.Delay("1.2.3.4", "other@x"); d != 4*time.Second {
		t.Errorf("same IP, other account: %v", d)
	}
	if d := th.Delay("5.6.7.8", "a@x"); d != 4*time.Second {
		t.Errorf("other IP, same account: %v", d)
	}
	if d := th.Delay("5.6.7.8", "other@x"); d != 0 {
		t.Errorf("other IP and account: %v", d)
	}
	th.Succeeded("1.2.3.4", "a@x")
	if d := th.Delay("5.6.7.8", "a@x"); d != 0 {
		t.Errorf("after a success, other IP: %v", d)
	}
	if d := th.Delay("1.2.3.4", "a@x"); d != 4*time.Second {
		t.Errorf("after a success, the IP's failures still count: %v", d)
	}
	now = now.Add(61 * time.Second)
	if d := th.Delay("1.2.3.4", "a@x"); d != 0 {
		t.Errorf("after the window: %v", d)
	}
	// Zero values: no delay.
	var z Throttle
	z.Window = time.Minute
	for i := 0; i < 30; i++ {
		z.Failed("1.2.3.4", "a@x")
	}
	if d := z.Delay("1.2.3.4", "a@x"); d != 0 {
		t.Errorf("DelayAfter 0: %v", d)
	}
}

// TestNewThrottleDelays: the defaults of issue 7: a delay from 5 failures
// growing with each, and the IP refused well before 20.
func TestNewThrottleDelays(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle()
	th.Now = func() time.Time { return now }
	var last time.Duration
	for i := 0; i < 20; i++ {
		d := th.Delay("1.2.3.4", "u"+string(rune('a'+i)))
		switch {
		case i < 5 && d != 0:
			t.Fatalf("delay %v after %d failures", d, i)
		case i >= 5 && d <= last && d < th.MaxDelay:
			t.Fatalf("delay %v after %d failures, not growing from %v", d, i, last)
		}
		last = d
		if i < th.MaxPerIP != th.Allowed("1.2.3.4", "new") {
			t.Fatalf("after %d failures Allowed is %v", i, !(i < th.MaxPerIP))
		}
		th.Failed("1.2.3.4", "u"+string(rune('a'+i)))
	}
	if th.Allowed("1.2.3.4", "new") {
		t.Fatal("IP allowed after 20 failures")
	}
}
