package sqlite

import (
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/store"
)

// FuzzNormalizeAddress checks the normalisers that turn what SMTP, IMAP,
// POP3 and the command line are given into the keys the store looks up:
// splitAddress (users, aliases, recipients) and store.CleanMailboxName.
// Each must never panic and be idempotent: a normalised address or name
// normalises to itself, so that storing and looking up agree. A normalised
// address is lower case, and its domain is what follows its last '@'.
// Seeds are in testdata/fuzz/FuzzNormalizeAddress.
func FuzzNormalizeAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if addr, domain, err := splitAddress(s); err == nil {
			if addr != strings.ToLower(addr) {
				t.Errorf("splitAddress(%q) = %q: not lower case", s, addr)
			}
			if at := strings.LastIndexByte(addr, '@'); at <= 0 || addr[at+1:] != domain {
				t.Errorf("splitAddress(%q) = %q, domain %q", s, addr, domain)
			}
			again, domain2, err := splitAddress(addr)
			if err != nil || again != addr || domain2 != domain {
				t.Errorf("splitAddress(%q) = %q, %q; again: %q, %q, %v", s, addr, domain, again, domain2, err)
			}
		}
		if name, err := store.CleanMailboxName(s); err == nil {
			again, err := store.CleanMailboxName(name)
			if err != nil || again != name {
				t.Errorf("CleanMailboxName(%q) = %q; again: %q, %v", s, name, again, err)
			}
		}
	})
}
