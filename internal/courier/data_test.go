package courier

import (
	"bytes"
	"strings"
	"testing"
)

// dataText runs src through a dataWriter in pieces of size n (all at once
// for 0) and returns what it wrote plus the last line end, which the caller
// sends through go-smtp: the text between DATA's 354 and the final ".".
func dataText(t *testing.T, src string, n int) string {
	t.Helper()
	var out bytes.Buffer
	dw := newDataWriter(&out)
	if n == 0 {
		n = len(src) + 1
	}
	for i := 0; i < len(src); i += n {
		p := []byte(src[i:min(i+n, len(src))])
		if m, err := dw.Write(p); err != nil || m != len(p) {
			t.Fatalf("Write = %d, %v", m, err)
		}
	}
	if err := dw.flush(); err != nil {
		t.Fatal(err)
	}
	return out.String() + "\r\n"
}

func TestDataWriter(t *testing.T) {
	long := strings.Repeat("x", 70000) // longer than the buffer
	for _, tc := range []struct{ name, src, want string }{
		{"plain", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n"},
		{"empty", "", "\r\n"},
		{"no final line end", "Subject: a\r\n\r\nno end", "Subject: a\r\n\r\nno end\r\n"},
		{"dot lines", ".\r\n..\r\n.x\r\nx.\r\n . \r\n", "..\r\n...\r\n..x\r\nx.\r\n . \r\n"},
		{"dot first byte", ".hidden", "..hidden\r\n"},
		{"dot after bare LF", "a\n.b\n", "a\r\n..b\r\n"},
		{"dot after bare CR", "a\r.b\r", "a\r\n..b\r\n"},
		{"lone dot at end", "a\r\n.", "a\r\n..\r\n"},
		{"bare LF", "a\nb\n\nc", "a\r\nb\r\n\r\nc\r\n"},
		{"bare CR", "a\rb\r\rc", "a\r\nb\r\n\r\nc\r\n"},
		{"CR CR LF", "line3\r\r\nx", "line3\r\n\r\nx\r\n"},
		{"ends with CR", "last\r", "last\r\n"},
		{"ends with CRLF CR", "a\r\n\r", "a\r\n\r\n"},
		{"mixed", "Subject: lf\n\nline1\nline2\rline3\r\r\n.dot\nlast\r", "Subject: lf\r\n\r\nline1\r\nline2\r\nline3\r\n\r\n..dot\r\nlast\r\n"},
		{"long line", long + "\n." + long, long + "\r\n.." + long + "\r\n"},
	} {
		for _, n := range []int{0, 1, 2, 3, 7, 4096} {
			if got := dataText(t, tc.src, n); got != tc.want {
				t.Errorf("%s, pieces of %d: got %q, want %q", tc.name, n, short(got), short(tc.want))
			}
		}
	}
}

func short(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + s[len(s)-40:]
	}
	return s
}

// The whole path: what the receiver gets after go-smtp's DATA and the
// remote's dot-unstuffing is the message with CRLF line ends.
func TestDotStuffingEndToEnd(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	rcv := startReceiver(t, "127.0.0.1", port)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	for i, tc := range []struct{ src, want string }{
		{"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n", "Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n"},
		{"Subject: x\n\n.\n", "Subject: x\r\n\r\n.\r\n"},
		{"Subject: x\r\n\r\nends in a dot line\r\n.", "Subject: x\r\n\r\nends in a dot line\r\n.\r\n"},
	} {
		wantCodes(t, deliver(t, c, "example.org", "a@sender.test", tc.src, "b@example.org"), "250 2.0.0")
		_, _, _, msgs := rcv.snapshot()
		if got := string(msgs[i].data); got != tc.want {
			t.Errorf("message %d: received %q, want %q", i, got, tc.want)
		}
	}
}

func BenchmarkDataWriter(b *testing.B) {
	var msg bytes.Buffer
	for msg.Len() < 10<<10 {
		msg.WriteString("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n.dot\r\n")
	}
	b.SetBytes(int64(msg.Len()))
	for b.Loop() {
		dw := newDataWriter(discard{})
		dw.Write(msg.Bytes())
		dw.flush()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
