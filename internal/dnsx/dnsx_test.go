package dnsx_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

func resolver(t *testing.T, records ...string) *dnsx.Resolver {
	t.Helper()
	addr := dnstest.Start(t, dnstest.Zone(t, records...))
	return dnsx.New(addr, 2*time.Second)
}

func TestLookupMXOrder(t *testing.T) {
	r := resolver(t,
		"example.org. MX 20 b1.example.org.",
		"example.org. MX 10 A.example.org.",
		"example.org. MX 20 b2.example.org.",
		"example.org. MX 30 c.example.org.",
	)
	seen := map[string]bool{}
	for i := 0; i < 40; i++ {
		mxs, err := r.LookupMX(context.Background(), "Example.ORG.")
		if err != nil {
			t.Fatal(err)
		}
		if len(mxs) != 4 || mxs[0] != (dnsx.MX{Host: "a.example.org", Pref: 10}) || mxs[3].Host != "c.example.org" {
			t.Fatalf("MX = %v", mxs)
		}
		if mxs[1].Pref != 20 || mxs[2].Pref != 20 {
			t.Fatalf("MX = %v", mxs)
		}
		seen[mxs[1].Host] = true
	}
	if !seen["b1.example.org"] || !seen["b2.example.org"] {
		t.Errorf("equal preferences never shuffled: %v", seen)
	}
}

func TestLookupMXNull(t *testing.T) {
	r := resolver(t, "nomail.example. MX 0 .")
	_, err := r.LookupMX(context.Background(), "nomail.example")
	if !errors.Is(err, dnsx.ErrNullMX) || dnsx.IsTemporary(err) {
		t.Fatalf("err = %v, want ErrNullMX", err)
	}
}

func TestLookupMXNone(t *testing.T) {
	r := resolver(t, "plain.example. A 192.0.2.1")
	mxs, err := r.LookupMX(context.Background(), "plain.example")
	if err != nil || len(mxs) != 0 {
		t.Fatalf("LookupMX = %v, %v; want none, nil", mxs, err)
	}
}

func TestNXDOMAIN(t *testing.T) {
	r := resolver(t, "example.org. MX 10 mx.example.org.")
	_, err := r.LookupMX(context.Background(), "missing.example")
	if !errors.Is(err, dnsx.ErrNotFound) || dnsx.IsTemporary(err) {
		t.Fatalf("MX err = %v, want ErrNotFound", err)
	}
	_, err = r.LookupIP(context.Background(), "missing.example")
	if !errors.Is(err, dnsx.ErrNotFound) || dnsx.IsTemporary(err) {
		t.Fatalf("IP err = %v, want ErrNotFound", err)
	}
}

func TestServFailIsTemporary(t *testing.T) {
	z := dnstest.Zone(t, "example.org. MX 10 mx.example.org.")
	z["broken.example"] = append(z["broken.example"], dnstest.ServFail("broken.example"))
	r := dnsx.New(dnstest.Start(t, z), 2*time.Second)
	_, err := r.LookupMX(context.Background(), "broken.example")
	if !dnsx.IsTemporary(err) || errors.Is(err, dnsx.ErrNotFound) {
		t.Fatalf("MX err = %v, want temporary", err)
	}
	_, err = r.LookupIP(context.Background(), "broken.example")
	if !dnsx.IsTemporary(err) {
		t.Fatalf("IP err = %v, want temporary", err)
	}
}

func TestTimeoutIsTemporary(t *testing.T) {
	// A UDP socket that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := dnsx.New(pc.LocalAddr().String(), 200*time.Millisecond)
	_, err = r.LookupMX(context.Background(), "example.org")
	if !dnsx.IsTemporary(err) {
		t.Fatalf("err = %v, want temporary", err)
	}
}

func TestLookupIPBothFamilies(t *testing.T) {
	r := resolver(t,
		"mx.example.org. AAAA ::1",
		"mx.example.org. A 127.0.0.2",
		"mx.example.org. A 127.0.0.3",
	)
	ips, err := r.LookupIP(context.Background(), "MX.example.org.")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.2", "127.0.0.3", "::1"}
	if len(ips) != len(want) {
		t.Fatalf("ips = %v, want %v", ips, want)
	}
	for i, ip := range ips {
		if ip.String() != want[i] {
			t.Fatalf("ips = %v, want %v", ips, want)
		}
	}
}

func TestLookupIPCNAMEChain(t *testing.T) {
	for _, follow := range []bool{true, false} {
		z := dnstest.Zone(t,
			"mx.example.org. CNAME one.example.net.",
			"one.example.net. CNAME two.example.com.",
			"two.example.com. A 127.0.0.9",
			"loop1.example. CNAME loop2.example.",
			"loop2.example. CNAME loop1.example.",
			"dangling.example. CNAME gone.example.",
		)
		s := dnstest.StartServer(t, z)
		s.NoFollowCNAME(!follow)
		r := dnsx.New(s.Addr, 2*time.Second)
		ips, err := r.LookupIP(context.Background(), "mx.example.org")
		if err != nil || len(ips) != 1 || ips[0].String() != "127.0.0.9" {
			t.Fatalf("follow=%v: ips = %v, %v", follow, ips, err)
		}
		if _, err := r.LookupIP(context.Background(), "loop1.example"); err == nil {
			t.Fatalf("follow=%v: CNAME loop resolved", follow)
		}
		if _, err := r.LookupIP(context.Background(), "dangling.example"); !errors.Is(err, dnsx.ErrNotFound) {
			t.Fatalf("follow=%v: dangling CNAME: %v", follow, err)
		}
	}
}

func TestLookupIPLiteral(t *testing.T) {
	r := dnsx.New("127.0.0.1:1", time.Second)
	ips, err := r.LookupIP(context.Background(), "127.0.0.7")
	if err != nil || len(ips) != 1 || ips[0].String() != "127.0.0.7" {
		t.Fatalf("ips = %v, %v", ips, err)
	}
}

// An answer too big for UDP comes truncated; the resolver asks again over TCP.
func TestTruncatedAnswerOverTCP(t *testing.T) {
	var recs []string
	for i := 1; i <= 200; i++ {
		recs = append(recs, fmt.Sprintf("big.example. A 10.0.%d.%d", i/250, i%250))
	}
	r := resolver(t, recs...)
	ips, err := r.LookupIP(context.Background(), "big.example")
	if err != nil || len(ips) != 200 {
		t.Fatalf("got %d addresses, %v; want 200", len(ips), err)
	}
}

func TestLocalhost(t *testing.T) {
	r := dnsx.New("127.0.0.1:1", time.Second) // never asked
	ips, err := r.LookupIP(context.Background(), "LocalHost.")
	if err != nil || len(ips) != 2 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) || !ips[1].Equal(net.IPv6loopback) {
		t.Fatalf("ips = %v, %v", ips, err)
	}
}

func TestSystemResolverLiteral(t *testing.T) {
	r := dnsx.New("", time.Second)
	ips, err := r.LookupIP(context.Background(), "::1")
	if err != nil || len(ips) != 1 || !ips[0].IsLoopback() {
		t.Fatalf("ips = %v, %v", ips, err)
	}
	_, err = r.LookupMX(context.Background(), "")
	if !errors.Is(err, dnsx.ErrNotFound) {
		t.Fatalf("empty domain: %v", err)
	}
}
