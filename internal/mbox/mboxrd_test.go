package mbox

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMboxrdQuoting(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	date := time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)
	msg := "Subject: hi\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\nFromage\r\nlast"
	if err := w.Write("a@example.org", date, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("", date, strings.NewReader("Subject: two\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	want := "From a@example.org Thu Nov 26 15:04:05 2026\n" +
		"Subject: hi\n\n>From here\n>>From there\n>>>From far\nFromage\nlast\n\n" +
		"From MAILER-DAEMON Thu Nov 26 15:04:05 2026\n" +
		"Subject: two\n\nbody\n\n"
	if buf.String() != want {
		t.Fatalf("got:\n%q\nwant:\n%q", buf.String(), want)
	}
}
