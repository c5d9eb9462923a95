package imapd

import (
	"fmt"
	"strings"
	"testing"
)

const nestedMsg = "From: a@b.example\r\n" +
	"Subject: nested\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"caf=C3=A9\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html\r\n" +
	"\r\n" +
	"<p>hi</p>\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: Group: x@y.example;\r\n" +
	"Subject: =?utf-8?q?inner?=\r\n" +
	"\r\n" +
	"inner body\r\n" +
	"--outer\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAw==\r\n" +
	"--outer\r\n" +
	"Content-Type: application/x-thing\r\n" +
	"Content-Transfer-Encoding: x-uuencode\r\n" +
	"\r\n" +
	"begin\r\n" +
	"--outer--\r\n"

// TestFetchSections checks BODYSTRUCTURE of nested multiparts and
// message/rfc822, sections inside them, partial fetches at the edges and
// BINARY decoding (RFC 9051 6.4.5, 7.5.2; RFC 3516).
func TestFetchSections(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, nestedMsg)
	full := "Delivered-To: " + testUser + "\r\n" + nestedMsg
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")

	u := r.ok("FETCH 1 BODYSTRUCTURE")
	bs := strings.Join(u, "")
	for _, want := range []string{
		`("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 9 0`,
		`"alternative" ("boundary" "inner")`,
		`("message" "rfc822" NIL NIL NIL "7bit" 67 (NIL "=?utf-8?q?inner?=" ((NIL NIL "Group" NIL) (NIL NIL "x" "y.example") (NIL NIL NIL NIL))`,
		`("application" "octet-stream" NIL NIL NIL "base64" 8 NIL NIL NIL NIL)`,
		`"mixed" ("boundary" "outer") NIL NIL NIL)`,
	} {
		if !strings.Contains(bs, want) {
			t.Errorf("BODYSTRUCTURE lacks %s:\n%s", want, bs)
		}
	}
	for _, tc := range []struct{ item, want string }{
		{"BODY.PEEK[1.1]", "BODY[1.1] {9}\r\ncaf=C3=A9)"},
		{"BODY.PEEK[1.2.MIME]", "BODY[1.2.MIME] {27}\r\nContent-Type: text/html\r\n\r\n)"},
		{"BODY.PEEK[2.HEADER]", "BODY[2.HEADER] {57}\r\nFrom: Group: x@y.example;\r\nSubject: =?utf-8?q?inner?=\r\n\r\n)"},
		{"BODY.PEEK[2.1]", "BODY[2.1] {10}\r\ninner body)"},
		{"BODY.PEEK[HEADER.FIELDS (subject)]", "BODY[HEADER.FIELDS (\"subject\")] {19}\r\nSubject: nested\r\n\r\n)"},
		{"BODY.PEEK[]<0.4>", "BODY[]<0> {4}\r\nDeli)"},
		{fmt.Sprintf("BODY.PEEK[]<%d.10>", len(full)-2), fmt.Sprintf("BODY[]<%d> {2}\r\n\r\n)", len(full)-2)},
		{fmt.Sprintf("BODY.PEEK[]<%d.5>", len(full)), fmt.Sprintf("BODY[]<%d> {0}\r\n)", len(full))},
		{"BINARY.PEEK[1.1]", "BINARY[1.1] ~{5}\r\ncafé)"},
		{"BINARY.PEEK[3]", "BINARY[3] ~{4}\r\n\x00\x01\x02\x03)"},
		{"BINARY.SIZE[3]", "BINARY.SIZE[3] 4)"},
	} {
		u := r.ok("FETCH 1 (%s)", tc.item)
		if len(u) != 1 || !strings.HasSuffix(u[0], tc.want) {
			t.Errorf("FETCH %s:\n got %q\nwant suffix %q", tc.item, u, tc.want)
		}
	}
	r.expect("NO [UNKNOWN-CTE]", "FETCH 1 (BINARY.PEEK[4])")
	u = r.ok("FETCH 1 (FLAGS)")
	if has(u, `\Seen`) {
		t.Fatalf("PEEK set \\Seen: %q", u)
	}
}
