package connlimit

import (
	"net"
	"testing"
)

func TestCounter(t *testing.T) {
	c := New(3, 2)
	if c.Acquire("a") != OK || c.Acquire("a") != OK {
		t.Fatal("first two from a refused")
	}
	if v := c.Acquire("a"); v != TooManyFromIP {
		t.Fatalf("third from a: %v, want TooManyFromIP", v)
	}
	if c.Acquire("b") != OK {
		t.Fatal("b refused")
	}
	if v := c.Acquire("c"); v != TooMany {
		t.Fatalf("fourth in all: %v, want TooMany", v)
	}
	c.Release("a")
	if c.Acquire("c") != OK {
		t.Fatal("c refused after a released one")
	}
	if u := New(0, 0); u.Acquire("x") != OK {
		t.Fatal("zero limits should not limit")
	}
}

func TestRemoteIP(t *testing.T) {
	if got := RemoteIP(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 25}); got != "127.0.0.2" {
		t.Fatalf("RemoteIP = %q", got)
	}
	if got := RemoteIP(&net.UnixAddr{Name: "/tmp/s", Net: "unix"}); got != "/tmp/s" {
		t.Fatalf("RemoteIP(unix) = %q", got)
	}
}
