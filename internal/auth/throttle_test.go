package auth

import (
	"fmt"
	"testing"
	"time"
)

// guesses numbers the passwords of fail.
var guesses int

// fail records a failed login with a password never used before.
func fail(th *Throttle, ip, user string) bool {
	guesses++
	return th.Failed(ip, user, fmt.Sprint("guess", guesses))
}

// TestThrottleCooldown: MaxPerIP failures within the window refuse the IP
// for the cool-down, whatever the account; other IPs are not refused, not
// even for the same account; after the cool-down the IP starts afresh.
func TestThrottleCooldown(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: 10 * time.Minute, Now: func() time.Time { return now }}
	for i := 0; i < 3; i++ {
		if th.Refused("1.2.3.4") {
			t.Fatalf("refused after %d failures", i)
		}
		if started := fail(th, "1.2.3.4", fmt.Sprintf("u%d@x", i)); started != (i == 2) {
			t.Fatalf("failure %d: Failed = %v", i+1, started)
		}
	}
	if !th.Refused("1.2.3.4") {
		t.Fatal("IP not refused after 3 failures")
	}
	if th.Refused("5.6.7.8") {
		t.Fatal("another IP refused")
	}
	// The cool-down outlasts the window: the IP stays refused.
	now = now.Add(5 * time.Minute)
	if !th.Refused("1.2.3.4") {
		t.Fatal("IP no longer refused when the window slid, before the cool-down ended")
	}
	now = now.Add(5 * time.Minute)
	if th.Refused("1.2.3.4") {
		t.Fatal("IP still refused after the cool-down")
	}
	// Afresh: two failures do not refuse it again, the third does.
	fail(th, "1.2.3.4", "a@x")
	fail(th, "1.2.3.4", "a@x")
	if th.Refused("1.2.3.4") {
		t.Fatal("refused again after 2 failures following the cool-down")
	}
	fail(th, "1.2.3.4", "a@x")
	if !th.Refused("1.2.3.4") {
		t.Fatal("not refused again after 3 more failures")
	}
}

// TestThrottleWindow: failures older than the window do not count.
func TestThrottleWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: time.Hour, Now: func() time.Time { return now }}
	fail(th, "1.2.3.4", "a@x")
	fail(th, "1.2.3.4", "a@x")
	now = now.Add(61 * time.Second)
	fail(th, "1.2.3.4", "a@x")
	if th.Refused("1.2.3.4") {
		t.Fatal("refused for failures spread over more than the window")
	}
}

// TestThrottleAccountNeverRefused: failures for one account from many IPs
// delay that account's logins but refuse no IP that has not itself failed
// often (no lock-out of the owner by a stranger).
func TestThrottleAccountNeverRefused(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: time.Hour, Now: func() time.Time { return now },
		DelayAfter: 5, DelayStep: time.Second, MaxDelay: 4 * time.Second}
	for i := 0; i < 50; i++ {
		fail(th, fmt.Sprintf("10.0.%d.%d", i/200, i%200), "victim@x")
	}
	if th.Refused("192.0.2.1") {
		t.Fatal("the owner's IP is refused")
	}
	if d := th.Delay("192.0.2.1", "victim@x"); d != 4*time.Second {
		t.Errorf("the account's failures delay it by %v, want the cap 4s", d)
	}
	th.Succeeded("192.0.2.1", "victim@x")
	if d := th.Delay("192.0.2.1", "victim@x"); d != 0 {
		t.Errorf("after the owner's success: delay %v", d)
	}
}

// TestThrottleDelay: no delay below 5 failures (per IP or per account), then
// 1, 2, 3 ... steps up to the cap; the window forgets; a success forgets the
// account's failures but not the IP's.
func TestThrottleDelay(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 20, Window: time.Minute, Cooldown: time.Minute, Now: func() time.Time { return now },
		DelayAfter: 5, DelayStep: time.Second, MaxDelay: 4 * time.Second}
	want := []time.Duration{0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4}
	for i, w := range want {
		if d := th.Delay("1.2.3.4", "a@x"); d != w*time.Second {
			t.Fatalf("after %d failures: delay %v, want %v", i, d, w*time.Second)
		}
		fail(th, "1.2.3.4", "a@x")
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
	if w := th.FailWait(0, "1.2.3.4", "a@x"); w != 4*time.Second {
		t.Errorf("FailWait without a base: %v", w)
	}
	if w := th.FailWait(time.Second, "1.2.3.4", "a@x"); w < 5*time.Second || w > 5500*time.Millisecond {
		t.Errorf("FailWait with a 1s base: %v, want 5s to 5.5s", w)
	}
	now = now.Add(61 * time.Second)
	if d := th.Delay("1.2.3.4", "a@x"); d != 0 {
		t.Errorf("after the window: %v", d)
	}
	// Zero values: no delay, no refusal.
	var z Throttle
	z.Window = time.Minute
	for i := 0; i < 30; i++ {
		fail(&z, "1.2.3.4", "a@x")
	}
	if d := z.Delay("1.2.3.4", "a@x"); d != 0 {
		t.Errorf("DelayAfter 0: %v", d)
	}
	if z.Refused("1.2.3.4") {
		t.Error("MaxPerIP 0 refused an IP")
	}
}

// TestNewThrottleDefaults: the defaults of issue 7: a delay from 5 failures
// growing with each, and the IP refused at 20 for a cool-down.
func TestNewThrottleDefaults(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle()
	th.Now = func() time.Time { return now }
	var last time.Duration
	for i := 0; i < 20; i++ {
		d := th.Delay("1.2.3.4", fmt.Sprintf("u%d", i))
		switch {
		case i < 5 && d != 0:
			t.Fatalf("delay %v after %d failures", d, i)
		case i >= 5 && d <= last && d < th.MaxDelay:
			t.Fatalf("delay %v after %d failures, not growing from %v", d, i, last)
		}
		last = d
		if th.Refused("1.2.3.4") {
			t.Fatalf("refused after %d failures", i)
		}
		fail(th, "1.2.3.4", fmt.Sprintf("u%d", i))
	}
	if !th.Refused("1.2.3.4") {
		t.Fatal("IP not refused after 20 failures")
	}
	now = now.Add(14 * time.Minute)
	if !th.Refused("1.2.3.4") {
		t.Fatal("IP not refused 14 minutes into its cool-down")
	}
	now = now.Add(time.Minute)
	if th.Refused("1.2.3.4") {
		t.Fatal("IP refused after the 15-minute cool-down")
	}
}

// TestThrottleIPv6Block: IPv6 addresses count by their /64, so that taking
// a new address from one's own block does not start a new count; IPv4
// addresses (also v4-mapped) count alone.
func TestThrottleIPv6Block(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: time.Hour, Now: func() time.Time { return now }}
	fail(th, "2001:db8:1:2::1", "a@x")
	fail(th, "2001:db8:1:2:ffff::9", "a@x")
	fail(th, "2001:db8:1:2:abcd:1234:5678:9abc", "a@x")
	if !th.Refused("2001:db8:1:2::77") {
		t.Error("another address of the same /64 is not refused")
	}
	if th.Refused("2001:db8:1:3::1") {
		t.Error("the next /64 is refused")
	}
	fail(th, "192.0.2.1", "a@x")
	fail(th, "192.0.2.2", "a@x")
	fail(th, "::ffff:192.0.2.3", "a@x")
	if th.Refused("192.0.2.4") || th.Refused("192.0.2.3") {
		t.Error("IPv4 addresses counted together")
	}
}

// TestThrottleRetriesNotCounted: the same user and password failing again
// from the same IP (a client with an old password, polling) counts once;
// a new password counts; the same pair from another IP counts there.
func TestThrottleRetriesNotCounted(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: time.Hour, Now: func() time.Time { return now },
		DelayAfter: 1, DelayStep: time.Second}
	for i := 0; i < 50; i++ {
		th.Failed("1.2.3.4", "a@x", "old-password")
		now = now.Add(time.Second)
	}
	if th.Refused("1.2.3.4") {
		t.Fatal("refused for one stale password retried")
	}
	if d := th.Delay("1.2.3.4", "a@x"); d != time.Second {
		t.Errorf("delay after one stale password retried: %v, want 1s (one failure)", d)
	}
	th.Failed("1.2.3.4", "a@x", "other")
	th.Failed("5.6.7.8", "a@x", "old-password")
	if d := th.Delay("9.9.9.9", "a@x"); d != 3*time.Second {
		t.Errorf("account delay %v, want 3s (three failures)", d)
	}
	th.Failed("1.2.3.4", "b@x", "old-password") // another user: another pair
	if !th.Refused("1.2.3.4") {
		t.Fatal("three distinct pairs did not refuse the IP")
	}
	// Past the window a retry counts again.
	now = now.Add(2 * time.Hour)
	th.Failed("1.2.3.4", "a@x", "old-password")
	th.Failed("1.2.3.4", "a@x", "old-password")
	now = now.Add(61 * time.Second)
	th.Failed("1.2.3.4", "a@x", "old-password")
	if d := th.Delay("1.2.3.4", "nobody"); d != time.Second {
		t.Errorf("IP delay %v, want 1s: the retry past the window counts anew, the earlier one has expired", d)
	}
}

// TestThrottleAcquire: one login per IP (IPv6: per /64) at a time; other
// IPs are not held up; release may be called twice; nothing is left
// behind once every login has ended.
func TestThrottleAcquire(t *testing.T) {
	th := NewThrottle()
	release := th.Acquire("2001:db8::1")
	got := make(chan string, 3)
	go func() {
		r := th.Acquire("2001:db8::2") // the same /64: waits
		got <- "same /64"
		r()
	}()
	go func() {
		r := th.Acquire("192.0.2.1")
		got <- "other IP"
		r()
	}()
	if g := <-got; g != "other IP" {
		t.Fatalf("%s went first, while the /64 was held", g)
	}
	select {
	case g := <-got:
		t.Fatalf("%s went ahead while the /64 was held", g)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	release()
	select {
	case g := <-got:
		if g != "same /64" {
			t.Fatalf("got %s", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting login never went ahead")
	}
	th.Acquire("2001:db8::3")() // free again, immediately
	th.mu.Lock()
	defer th.mu.Unlock()
	if len(th.logins) != 0 {
		t.Errorf("logins left behind: %v", th.logins)
	}
}
