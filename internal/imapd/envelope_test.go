package imapd

import (
	"reflect"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestParseAddressList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []imap.Address
	}{
		{"bob@example.org", []imap.Address{{Mailbox: "bob", Host: "example.org"}}},
		{`"Bob, Jr." <bob@example.org>, carol@example.net (Carol C)`, []imap.Address{
			{Name: "Bob, Jr.", Mailbox: "bob", Host: "example.org"}, {Name: "Carol C", Mailbox: "carol", Host: "example.net"}}},
		{"=?utf-8?q?J=C3=B6rg?= <jorg@example.de>", []imap.Address{{Name: "=?utf-8?q?J=C3=B6rg?=", Mailbox: "jorg", Host: "example.de"}}},
		{"undisclosed-recipients:;", []imap.Address{{Mailbox: "undisclosed-recipients"}, {}}},
		{"Friends: ann@a.example, Ben <ben@b.example>; dan@d.example", []imap.Address{
			{Mailbox: "Friends"}, {Mailbox: "ann", Host: "a.example"}, {Name: "Ben", Mailbox: "ben", Host: "b.example"}, {},
			{Mailbox: "dan", Host: "d.example"}}},
		{"alice", []imap.Address{{Mailbox: "alice", Host: "MISSING_DOMAIN"}}},
		{"Ann (the boss) Smith <ann@x.example>", []imap.Address{{Name: "Ann Smith", Mailbox: "ann", Host: "x.example"}}},
		{"a@x.example (A), b@y.example", []imap.Address{{Name: "A", Mailbox: "a", Host: "x.example"}, {Mailbox: "b", Host: "y.example"}}},
		{"<@route.example:eve@e.example>", []imap.Address{{Mailbox: "eve", Host: "e.example"}}},
		{"user@domain (Real Name)", []imap.Address{{Name: "Real Name", Mailbox: "user", Host: "domain"}}},
		{"<user-from (comment)@ (comment) domain.org>", []imap.Address{{Mailbox: "user-from", Host: "domain.org"}}},
		{"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;", []imap.Address{{Mailbox: "group"}, {Mailbox: "g1", Host: "d1.org"},
			{Mailbox: "g2", Host: "d2.org"}, {}, {Mailbox: "group2"}, {Mailbox: "g3", Host: "d3.org"}, {}}},
		{"", nil},
	} {
		if got := parseAddressList(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseAddressList(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestEnvelopeKeepsRawSubject(t *testing.T) {
	raw := "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n  folded\r\nFrom: a@b.example\r\nTo: group:;\r\nMessage-ID: <x@y>\r\nIn-Reply-To: <p@q> <r@s>\r\n\r\nbody\r\n"
	env := envelopeOf([]byte(raw))
	if env.Subject != "=?utf-8?q?Gr=C3=BC=C3=9Fe?= folded" || env.MessageID != "x@y" || len(env.InReplyTo) != 2 || len(env.To) != 2 {
		t.Fatalf("%+v", env)
	}
}
