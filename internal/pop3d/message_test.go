package pop3d

import (
	"bufio"
	"strings"
	"testing"
)

func render(t *testing.T, msg string, bodyLines int) string {
	t.Helper()
	var sb strings.Builder
	w := bufio.NewWriter(&sb)
	if err := writeMessage(w, strings.NewReader(msg), bodyLines); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return sb.String()
}

// TestWriteMessage: dot-stuffing, CRLF line ends and TOP's line counting.
func TestWriteMessage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		lines    int
		want     string
	}{
		{"plain", "A: b\r\n\r\nbody\r\n", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"dots", "A: b\r\n\r\n.\r\n..x\r\n.end\r\nmid.dle\r\n", -1, "A: b\r\n\r\n..\r\n...x\r\n..end\r\nmid.dle\r\n.\r\n"},
		{"bare LF", "A: b\n\nl1\nl2\n", -1, "A: b\r\n\r\nl1\r\nl2\r\n.\r\n"},
		{"no final newline", "A: b\r\n\r\nlast", -1, "A: b\r\n\r\nlast\r\n.\r\n"},
		{"empty", "", -1, ".\r\n"},
		{"top 0", "A: b\r\nC: d\r\n\r\nl1\r\nl2\r\n", 0, "A: b\r\nC: d\r\n\r\n.\r\n"},
		{"top 1", "A: b\r\n\r\n.l1\r\nl2\r\n", 1, "A: b\r\n\r\n..l1\r\n.\r\n"},
		{"top more than there is", "A: b\r\n\r\nl1\r\n", 5, "A: b\r\n\r\nl1\r\n.\r\n"},
		{"top without body", "A: b\r\n", 0, "A: b\r\n.\r\n"},
		{"top blank body lines count", "A: b\r\n\r\n\r\n\r\nx\r\n", 2, "A: b\r\n\r\n\r\n\r\n.\r\n"},
	} {
		if got := render(t, tc.in, tc.lines); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWriteMessageLongLines: lines longer than the read buffer keep their
// CRLF whole and are not stuffed in the middle.
func TestWriteMessageLongLines(t *testing.T) {
	long := strings.Repeat("x", 32<<10-1) + "\r" // the CR at the buffer's end
	in := "A: b\r\n\r\n" + long + "\n." + strings.Repeat("y", 70000) + "\r\nz\r\n"
	want := "A: b\r\n\r\n" + strings.TrimSuffix(long, "\r") + "\r\n.." + strings.Repeat("y", 70000) + "\r\nz\r\n.\r\n"
	if got := render(t, in, -1); got != want {
		t.Fatalf("long lines garbled (len %d, want %d)", len(got), len(want))
	}
	if got := render(t, in, 1); got != "A: b\r\n\r\n"+strings.TrimSuffix(long, "\r")+"\r\n.\r\n" {
		t.Fatalf("TOP 1 of long lines: len %d", len(got))
	}
}

// TestRETRDotStuffing over a socket: a message with dot lines and bare LF.
func TestRETRDotStuffing(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, "Subject: dots\r\n\r\n.\r\n.hidden\nend")
	c := e.login(t)
	c.ok("RETR 1")
	var raw []string
	for {
		l := c.line()
		raw = append(raw, l)
		if l == "." {
			break
		}
	}
	want := []string{"Delivered-To: " + testUser, "Subject: dots", "", "..", "..hidden", "end", "."}
	if strings.Join(raw, "|") != strings.Join(want, "|") {
		t.Fatalf("RETR wire lines %q, want %q", raw, want)
	}
}
