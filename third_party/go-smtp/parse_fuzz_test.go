package smtp

// Postern addition: a fuzz target for the parsers every MAIL and RCPT line
// goes through. Run it from this directory (fuzzing needs the main module):
// go test -run '^$' -fuzz '^FuzzParsePath$' .

import (
	"sort"
	"strings"
	"testing"
	"unicode"
)

// FuzzParsePath parses s as a command line (parseCmd), as the argument of
// MAIL FROM: (parseReversePath, then parseArgs on the rest, as handleMail
// does) and of RCPT TO: (parsePath). Checked: no panic; a parsed address
// has a non-empty local part and domain; parsed parameters have
// upper-case names (possibly empty: "<>=" gives one, which handleMail
// refuses as unknown) and no space or '=' in names or values, and they
// print back to the same parameters; and, taking s as local@domain (split
// at the last '@'), <local@domain> written with the local part quoted when
// it must be parses back to exactly that address. Seeds, in
// testdata/fuzz/FuzzParsePath: paths with parameters, the null path,
// quoted local parts, source routes and nmap's open-relay forms, odd
// bytes.
func FuzzParsePath(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if cmd, _, err := parseCmd(s); err == nil && cmd != strings.ToUpper(cmd) {
			t.Errorf("parseCmd(%q): command %q not upper case", s, cmd)
		}

		p := parser{s: s}
		if addr, err := p.parseReversePath(); err == nil {
			if addr != "" {
				checkAddress(t, s, addr)
			}
			if args, err := parseArgs(p.s); err == nil {
				checkArgs(t, p.s, args)
			}
		}
		p = parser{s: s}
		if addr, err := p.parsePath(); err == nil {
			checkAddress(t, s, addr)
		}

		at := strings.LastIndexByte(s, '@')
		if at < 0 {
			return
		}
		local, domain := s[:at], s[at+1:]
		if local == "" || domain == "" || strings.ContainsAny(domain, " \t>") {
			return // not a mailbox the grammar can carry
		}
		path := "<" + quoteLocal(local) + "@" + domain + ">"
		p = parser{s: path}
		addr, err := p.parsePath()
		if err != nil {
			t.Fatalf("parsePath(%q): %v", path, err)
		}
		if addr != local+"@"+domain || p.s != "" {
			t.Fatalf("parsePath(%q) = %q, rest %q; want %q", path, addr, p.s, local+"@"+domain)
		}
	})
}

// checkAddress checks a parsed mailbox: a non-empty local part, '@', and
// a non-empty domain (a quoted local part may itself hold '@').
func checkAddress(t *testing.T, s, addr string) {
	t.Helper()
	if len(addr) < 3 || !strings.Contains(addr[1:], "@") || strings.HasSuffix(addr, "@") {
		t.Fatalf("parsed %q from %q: want local@domain", addr, s)
	}
}

// checkArgs checks parsed ESMTP parameters and that they print back the
// same.
func checkArgs(t *testing.T, s string, args map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(args))
	for k, v := range args {
		if k != strings.ToUpper(k) || strings.ContainsAny(k, "=") || strings.IndexFunc(k, unicode.IsSpace) >= 0 {
			t.Fatalf("parseArgs(%q): bad name %q", s, k)
		}
		if strings.ContainsAny(v, "=") || strings.IndexFunc(v, unicode.IsSpace) >= 0 {
			t.Fatalf("parseArgs(%q): bad value %q", s, v)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(" " + k + "=" + args[k])
	}
	again, err := parseArgs(sb.String())
	if err != nil {
		t.Fatalf("parseArgs(%q) (printed from %q): %v", sb.String(), s, err)
	}
	if len(again) != len(args) {
		t.Fatalf("parseArgs(%q) = %q, from %q = %q", sb.String(), again, s, args)
	}
	for k, v := range args {
		if w, ok := again[k]; !ok || w != v {
			t.Fatalf("parseArgs(%q) = %q, from %q = %q", sb.String(), again, s, args)
		}
	}
}

// quoteLocal writes a local part as the dot-string parser reads it, or as
// a quoted string (RFC 5321 4.1.2) when it holds anything the dot-string
// parser stops at.
func quoteLocal(local string) string {
	if !strings.ContainsAny(local, "()<>[]:;\\,\" \t@") {
		return local
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(local) + `"`
}
