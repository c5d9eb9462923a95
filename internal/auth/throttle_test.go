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
