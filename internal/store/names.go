package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxMailboxName bounds the length of a mailbox name in bytes.
const MaxMailboxName = 512

// CleanMailboxName validates a mailbox name and returns its canonical form:
// "INBOX" in any case becomes "INBOX", also as the first level of a longer
// name (RFC 9051 5.1). Empty levels, the list wildcards "*" and "%",
// control characters and invalid UTF-8 are refused with ErrBadName.
func CleanMailboxName(name string) (string, error) {
	if name == "" || len(name) > MaxMailboxName || !utf8.ValidString(name) {
		return "", fmt.Errorf("%q: %w", name, ErrBadName)
	}
	levels := strings.Split(name, string(HierarchyDelim))
	for _, l := range levels {
		if l == "" {
			return "", fmt.Errorf("%q: empty level: %w", name, ErrBadName)
		}
		for _, r := range l {
			if r < 0x20 || r == 0x7f || r == '*' || r == '%' {
				return "", fmt.Errorf("%q: character %q not allowed: %w", name, r, ErrBadName)
			}
		}
	}
	if strings.EqualFold(levels[0], "INBOX") {
		levels[0] = "INBOX"
	}
	return strings.Join(levels, string(HierarchyDelim)), nil
}

// SpecialUses are the special-use attributes a mailbox may carry (RFC 6154;
// \All and \Flagged name virtual mailboxes, which Postern does not have).
var SpecialUses = []string{SpecialDrafts, SpecialSent, SpecialTrash, SpecialJunk, SpecialArchive}

// ValidSpecialUse reports whether use is "" or a known special-use attribute
// (compared case-insensitively); it returns the canonical spelling.
func ValidSpecialUse(use string) (string, bool) {
	if use == "" {
		return "", true
	}
	for _, u := range SpecialUses {
		if strings.EqualFold(u, use) {
			return u, true
		}
	}
	return "", false
}
