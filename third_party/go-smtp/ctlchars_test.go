package smtp

import "testing"

// TestCtlCharReply: which reply a command line holding CR, LF or NUL
// gets (Postern patch 7), and that clean lines are left alone.
func TestCtlCharReply(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int
		ec   EnhancedCode
		msg  string
	}{
		{"EHLO a\x00b", 501, EnhancedCode{5, 5, 2}, "EHLO argument contains a NUL character"},
		{"helo a\r", 501, EnhancedCode{5, 5, 2}, "HELO argument contains a CR character"},
		{"MAIL FROM:<a\x00@b>", 501, EnhancedCode{5, 1, 7}, "Sender address contains a NUL character"},
		{"mail from: <a@b\r>", 501, EnhancedCode{5, 1, 7}, "Sender address contains a CR character"},
		{"MAIL FROM:<a@b> SIZE=1\x00", 501, EnhancedCode{5, 5, 4}, "MAIL parameters contain a NUL character"},
		{"MAIL FROM:<> BODY=7BIT\r", 501, EnhancedCode{5, 5, 4}, "MAIL parameters contain a CR character"},
		{"MAIL\x00FROM:<a@b>", 501, EnhancedCode{5, 5, 2}, "Command line contains a NUL character"},
		{"RCPT TO:<\"a\nb\"@c>", 501, EnhancedCode{5, 1, 3}, "Recipient address contains a LF character"},
		{"RCPT TO:<a@b> NOTIFY=NEVER\r", 501, EnhancedCode{5, 5, 4}, "RCPT parameters contain a CR character"},
		{"NOOP \x00", 501, EnhancedCode{5, 5, 2}, "Command line contains a NUL character"},
		{"\x00", 501, EnhancedCode{5, 5, 2}, "Command line contains a NUL character"},
	} {
		code, ec, msg, bad := ctlCharReply(tc.line)
		if !bad || code != tc.code || ec != tc.ec || msg != tc.msg {
			t.Errorf("%q: %v %d %v %q, want %d %v %q", tc.line, bad, code, ec, msg, tc.code, tc.ec, tc.msg)
		}
	}
	for _, line := range []string{"EHLO a.example", "MAIL FROM:<\"a b\"@c> SIZE=10", "RCPT TO:<a@[IPv6:::1]>", "NOOP", "", "DATA"} {
		if _, _, _, bad := ctlCharReply(line); bad {
			t.Errorf("%q refused", line)
		}
	}
}
