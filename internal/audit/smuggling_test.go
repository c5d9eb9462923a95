package audit_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/audit"
)

// Postern accepts only <CRLF>.<CRLF> and rejects bare CR and LF.
func TestSmugglingPostern(t *testing.T) {
	t.Parallel()
	o := fastOptions(startPostern(t))
	o.NoRelay, o.Smuggling, o.SmuggleTo = true, true, "alice@example.org"
	r := runAudit(t, "smtp", o)
	if !r.Smuggling.Tested || len(r.Smuggling.AcceptedSequences) != 0 || len(r.Errors) != 0 {
		t.Errorf("smuggling %+v errors %v", r.Smuggling, r.Errors)
	}
	noFinding(t, r, "smtp-smuggling")
}

// A server that ends DATA at a bare-LF "." line is reported, with exactly
// the sequences it takes.
func TestSmugglingBareLF(t *testing.T) {
	t.Parallel()
	f := startFake(t, &fakeServer{greeting: "220 mx.fake.test ESMTP", lenientData: true,
		handle: smtpPeer{users: map[string]bool{"alice@example.net": true}}.handler()})
	o := fastOptions(f.addr)
	o.NoRelay, o.Smuggling, o.RelayTo = true, true, "alice@example.net"
	r := runAudit(t, "smtp", o)
	want := []string{`\n.\n`, `\n.\r\n`, `\r\n.\n`}
	if !reflect.DeepEqual(r.Smuggling.AcceptedSequences, want) {
		t.Errorf("accepted %q, want %q", r.Smuggling.AcceptedSequences, want)
	}
	wantFinding(t, r, "smtp-smuggling", audit.High)
	var text strings.Builder
	r.WriteText(&text)
	if !strings.Contains(text.String(), `smuggling:      ACCEPTS \n.\n \n.\r\n \r\n.\n`) {
		t.Errorf("text report:\n%s", text.String())
	}
	// Each accepted sequence split one test message into two; the others
	// arrived as one message.
	msgs := f.Messages()
	if len(msgs) != 7+len(want) {
		t.Errorf("%d messages reached the server", len(msgs))
	}
	for _, m := range msgs {
		if !strings.Contains(m, "To: <alice@example.net>") && !strings.Contains(m, "smuggled") {
			t.Errorf("unexpected message %q", m)
		}
	}
	// Without a recipient the check does not run.
	o.RelayTo = ""
	if _, err := audit.Run(t.Context(), "smtp", o); err == nil || !strings.Contains(err.Error(), "--smuggling-to") {
		t.Errorf("smuggling without a recipient: %v", err)
	}
}
