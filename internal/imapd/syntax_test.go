package imapd

import "testing"

// TestClientSyntaxErrorsAreBad: a malformed sequence set, an unknown
// SEARCH key and a mailbox name that is not modified UTF-7 are the
// client's errors, answered BAD [CLIENTBUG], not NO [SERVERBUG] (go-imap
// patch 11, found by FuzzIMAPSession).
func TestClientSyntaxErrorsAreBad(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
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
	} {
		r.expect("BAD [CLIENTBUG] Syntax error", "%s", cmd)
	}
	r.ok("NOOP")
}
