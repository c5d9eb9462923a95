package imapd

import "testing"

// TestClientSyntaxErrorsAreBad: a malformed sequence set, an unknown
// SEARCH key, a mailbox name or LIST pattern that is not modified UTF-7, a
// bad APPEND date-time and bad base64 in AUTHENTICATE are the client's
// errors, answered BAD, not NO [SERVERBUG] (go-imap patch 11, found by
// FuzzIMAPSession).
func TestClientSyntaxErrorsAreBad(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.expect("BAD Malformed SASL response", "AUTHENTICATE PLAIN !!!")
	r.login()
	r.ok("SELECT INBOX")
	for _, cmd := range []string{
		"FETCH 1:x FLAGS",
		"UID STORE 1:*y +FLAGS (\\Seen)",
		"COPY en INBOX",
		"SEARCH SAVE UID 1:*",
		"SEARCH NOTAKEY",
		"CREATE &Jjo",
		"SELECT &-&",
		"LIST \"\" &Jjo",
		"APPEND INBOX \"99-Jan-2020 10:00:00 +0000\" {3}",
	} {
		r.expect("BAD [CLIENTBUG] Syntax error", "%s", cmd)
	}
	r.ok("NOOP")
}
