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

// FuzzARFilter: the filter never panics, its output does not depend on how
// the input is cut into writes, it only ever removes bytes from the header
// section, and no field claiming our authserv-id survives it.
func FuzzARFilter(f *testing.F) {
	f.Add("Authentication-Results: mx.test; none\r\nSubject: x\r\n\r\nbody\r\n", 3)
	f.Add("A: b\r\n c\r\nAuthentication-Results: (x) mx.test;\r\n\tspf=pass\r\n\r\n", 1)
	f.Add("\r\nAuthentication-Results: mx.test; body\r\n", 5)
	f.Fuzz(func(t *testing.T, in string, cut int) {
		run := func(size int) (string, int) {
			var out strings.Builder
			flt := &arFilter{w: &out, id: "mx.test"}
			for s := in; s != ""; {
				n := min(max(size, 1), len(s))
				flt.Write([]byte(s[:n]))
				s = s[n:]
			}
			flt.finish()
			return out.String(), flt.dropped
		}
		whole, dropped := run(len(in) + 1)
		if chunked, d := run(cut%17 + 1); chunked != whole || d != dropped {
			t.Fatalf("chunking changes the output: %q vs %q", chunked, whole)
		}
		if len(whole) > len(in) || (dropped == 0 && whole != in) {
			t.Fatalf("output %q from %q (dropped %d)", whole, in, dropped)
		}
		if strings.Count(in, "\n") != strings.Count(in, "\r\n") || strings.Contains(strings.ReplaceAll(in, "\r\n", ""), "\r") {
			return // bare line ends never get here (lineChecker refuses them)
		}
		hdr := ""
		if !strings.HasPrefix(whole, "\r\n") {
			hdr, _, _ = strings.Cut(whole, "\r\n\r\n")
		}
		for _, line := range strings.Split(hdr, "\r\n") {
			if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			name, value, ok := strings.Cut(line, ":")
			if ok && strings.EqualFold(strings.TrimSpace(name), "Authentication-Results") && strings.EqualFold(authServID(value), "mx.test") {
				t.Fatalf("a field claiming us survived: %q in %q", line, whole)
			}
		}
	})
}
