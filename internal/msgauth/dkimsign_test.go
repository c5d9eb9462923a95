package msgauth

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// signTestMessages are messages whose canonicalization has corners:
// folding, whitespace, repeated and absent fields, empty and unterminated
// bodies, trailing empty lines, bare LF line ends.
var signTestMessages = map[string]string{
	"folded": "From: Alice\r\n  <alice@example.org>\r\nTo:   bob@remote.test ,\r\n\tcarol@remote.test  \r\nSubject:  folded \t subject\r\n" +
		"Received: from x by y; Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\nbody  with \t space \r\n \r\n",
	"repeated":       "From: <alice@example.org>\r\nTo: one@remote.test\r\nTo: two@remote.test\r\nSubject: a\r\nsubject: b\r\n\r\nx\r\n",
	"empty body":     "From: <alice@example.org>\r\nSubject: nothing\r\n\r\n",
	"blank body":     "From: <alice@example.org>\r\nSubject: blank\r\n\r\n\r\n  \r\n\t\r\n",
	"no final CRLF":  "From: <alice@example.org>\r\nSubject: open\r\n\r\nlast line",
	"trailing lines": "From: <alice@example.org>\r\n\r\na\r\n\r\nb\r\n\r\n\r\n\r\n",
	"bare LF":        "From: <alice@example.org>\nSubject: lf\n\nline 1\nline  2 \n\n",
	"dots":           "From: <alice@example.org>\r\n\r\n.\r\n..x\r\n. \r\n",
	"long":           "From: <alice@example.org>\r\nSubject: long\r\n\r\n" + strings.Repeat("The quick brown fox jumps over the lazy dog.  \r\n", 2000),
}

// Both signatures, made from one body hash, verify with go-msgauth and
// with dkimpy, and each covers what it says.
func TestSignWithOneBodyHash(t *testing.T) {
	ks := testKeyStore(t)
	keys, err := ks.Ensure("example.org")
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{}
	for _, k := range keys {
		records[k.Name()], _ = k.Record()
	}
	lookup := func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	rj, _ := json.Marshal(records)
	recordsFile := filepath.Join(t.TempDir(), "records.json")
	os.WriteFile(recordsFile, rj, 0o644)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := &Signer{Keys: ks, IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }, Now: func() time.Time { return now }}
	for name, msg := range signTestMessages {
		sigs, err := s.Sign(context.Background(), "alice@example.org", strings.NewReader(msg))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Count(sigs, "DKIM-Signature:") != 2 || !strings.Contains(sigs, "t=1795694400;") {
			t.Fatalf("%s: %q", name, sigs)
		}
		for _, line := range strings.Split(strings.TrimSuffix(sigs, "\r\n"), "\r\n") {
			if len(line) > 78 {
				t.Errorf("%s: line of %d characters: %q", name, len(line), line)
			}
		}
		verifs, err := dkim.VerifyWithOptions(strings.NewReader(sigs+msg), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(verifs) != 2 {
			t.Fatalf("%s: %v %v", name, verifs, err)
		}
		for _, v := range verifs {
			if v.Err != nil {
				t.Errorf("%s: go-msgauth: %v\n%s", name, v.Err, sigs)
			}
		}
		if name == "bare LF" {
			continue // dkimpy does not treat a bare LF as a line end
		}
		if out := dkimpy(t, sigs+msg, "verify", recordsFile); out != "pass\npass\n" {
			t.Errorf("%s: dkimpy says %q for:\n%s", name, out, sigs)
		}
	}
	// A changed signed field or body breaks both.
	msg := signTestMessages["repeated"]
	sigs, _ := s.Sign(context.Background(), "alice@example.org", strings.NewReader(msg))
	for _, bad := range []string{
		strings.Replace(msg, "To: two@", "To: six@", 1),
		strings.Replace(msg, "subject: b", "subject: c", 1),
		msg + "more\r\n",
		"From: <mallory@example.org>\r\n" + msg,
	} {
		verifs, _ := dkim.VerifyWithOptions(strings.NewReader(sigs+bad), &dkim.VerifyOptions{LookupTXT: lookup})
		for _, v := range verifs {
			if v.Err == nil {
				t.Errorf("altered message verifies: %q", bad)
			}
		}
	}
}

func BenchmarkSign(b *testing.B) {
	ks := NewKeyStore(filepath.Join(b.TempDir(), "dkim"))
	if _, err := ks.Ensure("example.org"); err != nil {
		b.Fatal(err)
	}
	s := &Signer{Keys: ks, IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }}
	msg := "From: <alice@example.org>\r\nSubject: bench\r\n\r\n" + strings.Repeat("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n", 120)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := s.Sign(context.Background(), "alice@example.org", strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}
