package smtpd_test

import (
	"strings"
	"testing"
)

// TestMultiLineReplyInOneWrite: the EHLO reply leaves in one write, so that
// a client reading one segment as the whole reply (nmap's smtp library)
// stays in step; before, nmap's smtp-enum-users took the rest of EHLO for
// the answer to its first VRFY and reported a user that does not exist.
func TestMultiLineReplyInOneWrite(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.write("EHLO client.example.net\r\n")
	buf := make([]byte, 4096)
	n, err := c.nc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(buf[:n]), "\r\n"), "\r\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[len(lines)-1], "250 ") {
		t.Fatalf("one read got %q, want the whole multi-line EHLO reply", buf[:n])
	}
	// Pipelined commands: their replies come together too, and in order.
	c.write("NOOP\r\nNOOP\r\nQUIT\r\n")
	var got string
	for !strings.Contains(got, "221 ") {
		n, err := c.nc.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got += string(buf[:n])
	}
	if strings.Count(got, "250 ") != 2 || !strings.HasSuffix(got, "\r\n") || strings.Index(got, "221 ") < strings.LastIndex(got, "250 ") {
		t.Fatalf("pipelined replies %q", got)
	}
}
