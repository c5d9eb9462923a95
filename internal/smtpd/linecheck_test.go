package smtpd

import (
	"bytes"
	"errors"
	"testing"
)

// check runs data through a lineChecker in writes split at the given
// points and returns what it passed on, the header it kept and the result.
func check(data string, splits ...int) (out, header string, err error) {
	var buf bytes.Buffer
	c := &lineChecker{w: &buf}
	prev := 0
	for _, s := range append(splits, len(data)) {
		if s > prev {
			c.Write([]byte(data[prev:s]))
		}
		prev = s
	}
	err = c.finish()
	return buf.String(), c.header.String(), err
}

func TestLineChecker(t *testing.T) {
	for _, tc := range []struct {
		in, out, header string
		bad             bool
	}{
		{in: "Subject: a\r\n\r\nbody\r\n", out: "Subject: a\r\n\r\nbody\r\n", header: "Subject: a\r\n\r\n"},
		{in: "Subject: a\r\n\r\nno final CRLF", out: "Subject: a\r\n\r\nno final CRLF\r\n", header: "Subject: a\r\n\r\n"},
		{in: "Subject: only a header\r\n", out: "Subject: only a header\r\n", header: "Subject: only a header\r\n"},
		{in: "\r\nbody without header\r\n", out: "\r\nbody without header\r\n", header: ""},
		{in: "", out: "", header: ""},
		{in: "a\nb\r\n", bad: true},
		{in: "a\rb\r\n", bad: true},
		{in: "a\r\r\n", bad: true},
		{in: "a\r\n\n", bad: true},
		{in: "\n", bad: true},
		{in: "a\r", bad: true},
		{in: "Subject: a\r\n\r\nbody\r\n\r", bad: true},
	} {
		// Every way of splitting the input into two or three writes gives
		// the same result.
		for i := 0; i <= len(tc.in); i++ {
			for j := i; j <= len(tc.in); j++ {
				out, header, err := check(tc.in, i, j)
				if tc.bad {
					if !errors.Is(err, errBareLineEnd) {
						t.Errorf("%q split at %d,%d: err %v, want errBareLineEnd", tc.in, i, j, err)
					}
					continue
				}
				if err != nil || out != tc.out || header != tc.header {
					t.Errorf("%q split at %d,%d: out %q header %q err %v; want out %q header %q", tc.in, i, j, out, header, err, tc.out, tc.header)
				}
			}
		}
	}
}

func TestHeaderMessageID(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"Message-ID: <a@b.example>\r\n\r\n", "a@b.example"},
		{"Subject: x\r\nmessage-id:   <c@d>  \r\n\r\n", "c@d"},
		{"Message-ID:\r\n <folded@example>\r\n\r\n", "folded@example"},
		{"Subject: no id\r\n\r\n", ""},
		{"Message-ID: <unterminated@example>", "unterminated@example"},
		{"Message-ID: <a b@c>\r\n\r\n", "a_b@c"},
		{"", ""},
	} {
		if got := headerMessageID([]byte(tc.header)); got != tc.want {
			t.Errorf("headerMessageID(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

// TestLineCheckerNULAndLength: a NUL is reported unless a bare line end
// comes too (that one wins), nothing after the NUL is passed on, and
// maxLine bounds each line with its CRLF, however the writes are split.
func TestLineCheckerNULAndLength(t *testing.T) {
	for _, tc := range []struct {
		in      string
		maxLine int
		want    error
	}{
		{"a\x00b\r\n", 0, errNUL},
		{"\x00", 0, errNUL},
		{"a\x00\nb\r\n", 0, errBareLineEnd},
		{"a\x00b\r\nc\rd\r\n", 0, errBareLineEnd},
		{"12345678\r\n12345678\r\n", 10, nil},
		{"12345678\r\n123456789\r\n", 10, errLongLine},
		{"123456789", 10, nil}, // a last line without CRLF: CRLF is added
		{"1234567890", 10, errLongLine},
	} {
		for i := 0; i <= len(tc.in); i++ {
			var buf bytes.Buffer
			c := &lineChecker{w: &buf, maxLine: tc.maxLine}
			c.Write([]byte(tc.in[:i]))
			c.Write([]byte(tc.in[i:]))
			err := c.finish()
			if !errors.Is(err, tc.want) || tc.want == nil && err != nil {
				t.Errorf("%q split at %d: err %v, want %v", tc.in, i, err, tc.want)
			}
			if tc.want == errNUL && bytes.IndexByte(buf.Bytes(), 0) >= 0 && i > 0 && bytes.IndexByte([]byte(tc.in[:i]), 0) >= 0 {
				t.Errorf("%q split at %d: the write holding the NUL was passed on: %q", tc.in, i, buf.String())
			}
		}
	}
}
