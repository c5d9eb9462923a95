package smtpd

import (
	"strings"
	"testing"
)

func TestARFilterChunks(t *testing.T) {
	in := "Authentication-Results: mx.test;\r\n dkim=pass\r\n" +
		"Subject: x\r\n" +
		"authentication-results:mx.test(c);none\r\n" +
		"Authentication-Results: other; none\r\n" +
		"\r\n" +
		"Authentication-Results: mx.test; in the body\r\n"
	want := "Subject: x\r\nAuthentication-Results: other; none\r\n\r\nAuthentication-Results: mx.test; in the body\r\n"
	for _, size := range []int{1, 2, 3, 7, 1000} {
		var out strings.Builder
		f := &arFilter{w: &out, id: "mx.test"}
		for s := in; s != ""; {
			n := min(size, len(s))
			if _, err := f.Write([]byte(s[:n])); err != nil {
				t.Fatal(err)
			}
			s = s[n:]
		}
		if err := f.finish(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want || f.dropped != 2 {
			t.Errorf("chunks of %d: dropped %d, got %q", size, f.dropped, out.String())
		}
	}
	// A message that is all header, without a final line end.
	var out strings.Builder
	f := &arFilter{w: &out, id: "mx.test"}
	f.Write([]byte("Subject: x\r\nAuthentication-Results: mx.test; none"))
	f.finish()
	if out.String() != "Subject: x\r\n" {
		t.Errorf("all header: %q", out.String())
	}
}

func TestAuthServID(t *testing.T) {
	for in, want := range map[string]string{
		" mx.test; spf=pass": "mx.test", "mx.test 1; none": "mx.test", " (c (nested)) mx.test;": "mx.test",
		` "mx.test"; none`: "mx.test", "": "", "\r\n\tmx.test\r\n\t; none": "mx.test",
	} {
		if got := authServID(in); got != want {
			t.Errorf("authServID(%q) = %q, want %q", in, got, want)
		}
	}
}
