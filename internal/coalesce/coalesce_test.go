package coalesce

import (
	"io"
	"net"
	"testing"
	"time"
)

// pair returns a coalescing server side and the client side of a loopback
// TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return New(server), client
}

// readWithin reads what arrives within d.
func readWithin(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1024)
	n, _ := c.Read(buf)
	return string(buf[:n])
}

// TestHeldUntilReadOrFlush: lines written one by one stay held until the
// server reads or flushes, then leave in one write.
func TestHeldUntilReadOrFlush(t *testing.T) {
	s, c := pair(t)
	io.WriteString(s, "250-first\r\n")
	io.WriteString(s, "250 last\r\n")
	if got := readWithin(t, c, 100*time.Millisecond); got != "" {
		t.Fatalf("output left before a read or flush: %q", got)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := readWithin(t, c, time.Second); got != "250-first\r\n250 last\r\n" {
		t.Fatalf("after Flush: %q", got)
	}

	io.WriteString(s, "354 go ahead\r\n")
	done := make(chan string)
	go func() {
		buf := make([]byte, 16)
		n, _ := s.Read(buf)
		done <- string(buf[:n])
	}()
	if got := readWithin(t, c, time.Second); got != "354 go ahead\r\n" {
		t.Fatalf("a Read did not send what was held: %q", got)
	}
	// While the server waits in Read (IMAP IDLE), output goes out at once.
	time.Sleep(20 * time.Millisecond)
	io.WriteString(s, "* 3 EXISTS\r\n")
	if got := readWithin(t, c, time.Second); got != "* 3 EXISTS\r\n" {
		t.Fatalf("output during a waiting Read: %q", got)
	}
	io.WriteString(c, "DONE\r\n")
	if got := <-done; got != "DONE\r\n" {
		t.Fatalf("server read %q", got)
	}
}

// TestMaxAndClose: past Max bytes output is written without a read, and
// Close writes what is held before closing.
func TestMaxAndClose(t *testing.T) {
	s, c := pair(t)
	big := make([]byte, Max)
	go s.Write(big)
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(c, make([]byte, Max)); err != nil {
		t.Fatalf("Max bytes held: %v", err)
	}
	io.WriteString(s, "221 bye\r\n")
	s.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	rest, _ := io.ReadAll(c)
	if string(rest) != "221 bye\r\n" {
		t.Fatalf("after Close: %q", rest)
	}
}
