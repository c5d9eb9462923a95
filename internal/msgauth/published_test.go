package msgauth

import (
	"context"
	"strings"
	"testing"
)

// TestPublishedAfterRotationAndRetirement: signatures made with a key stay
// usable after a rotation (the old key is still published) and not after
// the old key is retired; a field without d= or s= is not trusted.
func TestPublishedAfterRotationAndRetirement(t *testing.T) {
	ks := testKeyStore(t)
	s := &Signer{Keys: ks, IsLocal: func(_ context.Context, d string) (bool, error) { return d == "example.org", nil }}
	msg := "From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: kept\r\n\r\nbody\r\n"
	sigs, err := s.Sign(context.Background(), "alice@example.org", strings.NewReader(msg))
	if err != nil || strings.Count(sigs, "DKIM-Signature:") != 2 {
		t.Fatalf("sign: %q %v", sigs, err)
	}
	if !s.Published(sigs) {
		t.Fatal("fresh signatures not published")
	}
	if _, err := ks.Rotate("example.org"); err != nil {
		t.Fatal(err)
	}
	if !s.Published(sigs) {
		t.Error("signatures of the previous keys refused while those keys are still published")
	}
	if _, err := ks.Retire("example.org"); err != nil {
		t.Fatal(err)
	}
	if s.Published(sigs) {
		t.Error("signatures of retired keys taken as published")
	}
	fresh, err := s.Sign(context.Background(), "alice@example.org", strings.NewReader(msg))
	if err != nil || !s.Published(fresh) {
		t.Fatalf("signatures of the new keys: %v", err)
	}
	if s.Published("DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n b=abc\r\n") {
		t.Error("a signature without s= taken as published")
	}
	if s.Published("DKIM-Signature: v=1; a=rsa-sha256; d=other.example;\r\n s=p202611a; b=abc\r\n") {
		t.Error("a signature of a domain without keys taken as published")
	}
}
