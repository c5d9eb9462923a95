package smtpd_test

import (
	"strconv"
	"testing"

	"github.com/postern-mail/postern/internal/smtpd"
)

// vrfyAnswers sends VRFY and EXPN for each name and returns the raw
// replies (code and text), in order.
func vrfyAnswers(c *conn, names []string) []string {
	var out []string
	for _, n := range names {
		for _, cmd := range []string{"VRFY ", "EXPN "} {
			c.write(cmd + n + "\r\n")
			code, msg := c.reply()
			out = append(out, cmd+"->"+strconv.Itoa(code)+" "+msg)
		}
	}
	return out
}

// TestVRFYAndEXPNRevealNobody: real users, an alias and made-up names get
// byte-identical answers to VRFY (252 2.5.2, or 502 5.5.1 when VRFY is
// off) and EXPN (502 5.5.1), before and after EHLO, on the MX and on
// submission.
func TestVRFYAndEXPNRevealNobody(t *testing.T) {
	names := []string{"alice", "alice@example.org", "team@example.org", "Bob <bob@example.org>",
		"nobody", "nobody@example.org", "guess1@example.org", "postmaster", "<carol@example.org>"}
	for _, tc := range []struct {
		name   string
		change func(*smtpd.Config)
		vrfy   string
	}{
		{"mx", nil, "252 2.5.2 Cannot VRFY user, but will accept message"},
		{"mx-off", func(c *smtpd.Config) { c.DisableVRFY = true }, "502 5.5.1 VRFY command not implemented"},
		{"submission", func(c *smtpd.Config) { c.Submission = true }, "252 2.5.2 Cannot VRFY user, but will accept message"},
		{"submission-off", func(c *smtpd.Config) { c.Submission = true; c.DisableVRFY = true }, "502 5.5.1 VRFY command not implemented"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, tc.change)
			c := ts.dial()
			before := vrfyAnswers(c, names)
			c.ehlo("client.example.net")
			after := vrfyAnswers(c, names)
			for _, got := range append(before, after...) {
				want := "EXPN ->502 5.5.1 EXPN command not implemented"
				if got[:4] == "VRFY" {
					want = "VRFY ->" + tc.vrfy
				}
				if got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			}
			// The session is still usable.
			c.expect("NOOP", 250, "2.0.0")
		})
	}
}
