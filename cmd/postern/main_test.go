package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// testConfig writes a config file with every listener disabled and the data
// directory next to it, and returns the file's path.
func testConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "postern.toml")
	cfg := `hostname = "mail.example.org"
data_dir = "data"

[listen]
smtp = []
submission = []
submissions = []
imap = []
imaps = []
pop3 = []
pop3s = []
admin = []
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command line with --config cfg and the given stdin.
func cli(t *testing.T, cfg, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	if cfg != "" {
		args = append([]string{"--config", cfg}, args...)
	}
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// ok runs a command that must succeed and returns its standard output.
func ok(t *testing.T, cfg, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, cfg, stdin, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("postern %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// fails runs a command that must fail with the given status and one line
// on standard error containing want; it returns that line.
func fails(t *testing.T, code int, want, cfg, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, cfg, stdin, args...)
	if r.code != code {
		t.Fatalf("postern %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.code, code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("postern %s: stdout %q, want nothing", strings.Join(args, " "), r.stdout)
	}
	if !strings.HasSuffix(r.stderr, "\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("postern %s: stderr %q, want one line", strings.Join(args, " "), r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "postern: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("postern %s: stderr %q, want \"postern: ...%s...\"", strings.Join(args, " "), r.stderr, want)
	}
	return strings.TrimSuffix(r.stderr, "\n")
}

// passwordHash reads a user's stored hash straight from the data directory.
func passwordHash(t *testing.T, cfg, addr string) string {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(filepath.Dir(cfg), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.UserByAddress(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return u.PasswordHash
}

func checkPassword(t *testing.T, cfg, addr, pw string, want bool) {
	t.Helper()
	got, err := auth.CheckPassword(passwordHash(t, cfg, addr), pw)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("password %q for %s: match %v, want %v", pw, addr, got, want)
	}
}

func TestDomainCommands(t *testing.T) {
	cfg := testConfig(t)
	if out := ok(t, cfg, "", "domain", "list"); out != "" {
		t.Errorf("domain list on a new store: %q", out)
	}
	if out := ok(t, cfg, "", "domain", "add", "example.org"); !strings.HasPrefix(out, "added domain example.org\nDKIM keys p") {
		t.Errorf("domain add: %q", out)
	}
	if out := ok(t, cfg, "", "domain", "add", "Example.COM"); !strings.HasPrefix(out, "added domain example.com\n") {
		t.Errorf("domain add: %q", out)
	}
	if out := ok(t, cfg, "", "domain", "list"); out != "example.com\nexample.org\n" {
		t.Errorf("domain list: %q", out)
	}
	// The data directory is relative to the config file.
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "data")); err != nil {
		t.Errorf("data directory not next to the config file: %v", err)
	}

	fails(t, 1, "already exists", cfg, "", "domain", "add", "EXAMPLE.org")
	fails(t, 2, "not a domain name", cfg, "", "domain", "add", "bad domain")
	fails(t, 2, "not a domain name", cfg, "", "domain", "add", "user@example.org")
	fails(t, 1, "not found", cfg, "", "domain", "remove", "example.net")

	// A domain with users or aliases cannot be removed.
	ok(t, cfg, "long enough password\n", "user", "add", "alice@example.org", "--password-stdin")
	ok(t, cfg, "", "alias", "add", "info@example.com", "alice@example.org")
	fails(t, 1, "remove them first", cfg, "", "domain", "remove", "example.org")
	fails(t, 1, "remove them first", cfg, "", "domain", "remove", "example.com")
	ok(t, cfg, "", "alias", "remove", "info@example.com")
	if out := ok(t, cfg, "", "domain", "remove", "EXAMPLE.com"); out != "removed domain example.com\n" {
		t.Errorf("domain remove: %q", out)
	}
	ok(t, cfg, "", "user", "remove", "alice@example.org")
	ok(t, cfg, "", "domain", "remove", "example.org")
	if out := ok(t, cfg, "", "domain", "list"); out != "" {
		t.Errorf("domain list after removing all: %q", out)
	}
}

var generatedRe = regexp.MustCompile(`^added user (\S+) with password: (\S+)\n$`)

func TestUserCommands(t *testing.T) {
	cfg := testConfig(t)
	ok(t, cfg, "", "domain", "add", "example.org")

	// With --password-stdin: the first line of standard input.
	if out := ok(t, cfg, "correct horse battery\nignored second line\n", "user", "add", "Alice@Example.org", "--password-stdin"); out != "added user alice@example.org\n" {
		t.Errorf("user add: %q", out)
	}
	checkPassword(t, cfg, "alice@example.org", "correct horse battery", true)
	checkPassword(t, cfg, "alice@example.org", "ignored second line", false)
	if h := passwordHash(t, cfg, "alice@example.org"); !strings.HasPrefix(h, "$argon2id$") {
		t.Errorf("stored hash %q is not argon2id", h)
	}
	// A CRLF line end is not part of the password.
	ok(t, cfg, "windows line end\r\n", "user", "add", "carol@example.org", "--password-stdin")
	checkPassword(t, cfg, "carol@example.org", "windows line end", true)

	// Without: a generated password, printed once.
	out := ok(t, cfg, "", "user", "add", "bob@example.org")
	m := generatedRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("user add without --password-stdin printed %q", out)
	}
	if m[1] != "bob@example.org" || len(m[2]) < 12 {
		t.Errorf("generated: user %q password %q", m[1], m[2])
	}
	checkPassword(t, cfg, "bob@example.org", m[2], true)

	if out := ok(t, cfg, "", "user", "list"); out != "alice@example.org\nbob@example.org\ncarol@example.org\n" {
		t.Errorf("user list: %q", out)
	}

	fails(t, 1, "already exists", cfg, "another password\n", "user", "add", "ALICE@example.org", "--password-stdin")
	fails(t, 1, "not found", cfg, "another password\n", "user", "add", "dave@example.net", "--password-stdin")
	fails(t, 2, "not an address", cfg, "another password\n", "user", "add", "no-at-sign", "--password-stdin")
	fails(t, 2, "not an address", cfg, "another password\n", "user", "add", "a b@example.org", "--password-stdin")
	fails(t, 1, "at least 8 characters", cfg, "short\n", "user", "add", "dave@example.org", "--password-stdin")
	fails(t, 1, "no password", cfg, "", "user", "add", "dave@example.org", "--password-stdin")

	// passwd, from stdin and generated.
	if out := ok(t, cfg, "a new password\n", "user", "passwd", "alice@example.org", "--password-stdin"); out != "password changed for alice@example.org\n" {
		t.Errorf("user passwd: %q", out)
	}
	checkPassword(t, cfg, "alice@example.org", "a new password", true)
	checkPassword(t, cfg, "alice@example.org", "correct horse battery", false)
	out = ok(t, cfg, "", "user", "passwd", "Bob@example.org")
	m = regexp.MustCompile(`^new password for bob@example.org: (\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("user passwd without --password-stdin printed %q", out)
	}
	checkPassword(t, cfg, "bob@example.org", m[1], true)
	fails(t, 1, "not found", cfg, "a new password\n", "user", "passwd", "nobody@example.org", "--password-stdin")

	// remove.
	if out := ok(t, cfg, "", "user", "remove", "BOB@example.org"); out != "removed user bob@example.org\n" {
		t.Errorf("user remove: %q", out)
	}
	fails(t, 1, "not found", cfg, "", "user", "remove", "bob@example.org")
	if out := ok(t, cfg, "", "user", "list"); out != "alice@example.org\ncarol@example.org\n" {
		t.Errorf("user list after remove: %q", out)
	}
}

func TestAliasCommands(t *testing.T) {
	cfg := testConfig(t)
	ok(t, cfg, "", "domain", "add", "example.org")
	ok(t, cfg, "password one\n", "user", "add", "alice@example.org", "--password-stdin")
	ok(t, cfg, "password two\n", "user", "add", "bob@example.org", "--password-stdin")

	if out := ok(t, cfg, "", "alias", "add", "Team@example.org", "alice@example.org", "BOB@example.org"); out != "added alias team@example.org -> alice@example.org, bob@example.org\n" {
		t.Errorf("alias add: %q", out)
	}
	ok(t, cfg, "", "alias", "add", "postmaster@example.org", "alice@example.org")
	if out := ok(t, cfg, "", "alias", "list"); out != "postmaster@example.org -> alice@example.org\nteam@example.org -> alice@example.org, bob@example.org\n" {
		t.Errorf("alias list: %q", out)
	}

	// A target in a hosted domain must be a user; one elsewhere is
	// forwarded. The alias must be in a local domain and must not shadow a
	// user.
	if out := ok(t, cfg, "", "alias", "add", "ext@example.org", "someone@example.net"); out != "added alias ext@example.org -> someone@example.net\n" {
		t.Errorf("forwarding alias add: %q", out)
	}
	ok(t, cfg, "", "alias", "remove", "ext@example.org")
	fails(t, 1, "is not a user of hosted domain", cfg, "", "alias", "add", "ext@example.org", "nobody@example.org")
	fails(t, 1, "not found", cfg, "", "alias", "add", "x@example.net", "alice@example.org")
	fails(t, 1, "is a user", cfg, "", "alias", "add", "alice@example.org", "bob@example.org")
	fails(t, 2, "requires at least 2 arg(s)", cfg, "", "alias", "add", "lonely@example.org")

	if out := ok(t, cfg, "", "alias", "remove", "TEAM@example.org"); out != "removed alias team@example.org\n" {
		t.Errorf("alias remove: %q", out)
	}
	fails(t, 1, "not found", cfg, "", "alias", "remove", "team@example.org")
	if out := ok(t, cfg, "", "alias", "list"); out != "postmaster@example.org -> alice@example.org\n" {
		t.Errorf("alias list after remove: %q", out)
	}

	// Removing a user drops it from the aliases that pointed to it.
	ok(t, cfg, "", "user", "remove", "alice@example.org")
	if out := ok(t, cfg, "", "alias", "list"); out != "" {
		t.Errorf("alias list after removing its only target: %q", out)
	}
}

func TestMailboxList(t *testing.T) {
	cfg := testConfig(t)
	ok(t, cfg, "", "domain", "add", "example.org")
	ok(t, cfg, "password one\n", "user", "add", "alice@example.org", "--password-stdin")
	out := ok(t, cfg, "", "mailbox", "list", "Alice@example.org")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("mailbox list: %d lines, want a heading and 6 mailboxes:\n%s", len(lines), out)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "MAILBOX MESSAGES UNSEEN BYTES" {
		t.Errorf("heading %q", lines[0])
	}
	var names []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 4 || f[1] != "0" || f[2] != "0" || f[3] != "0" {
			t.Errorf("line %q, want an empty mailbox", l)
			continue
		}
		names = append(names, f[0])
	}
	if len(names) == 0 || names[0] != "INBOX" {
		t.Errorf("mailboxes %q, want INBOX first", names)
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "Archive Drafts INBOX Junk Sent Trash" {
		t.Errorf("mailboxes %q, want INBOX, Drafts, Sent, Trash, Junk and Archive", got)
	}
	fails(t, 1, "not found", cfg, "", "mailbox", "list", "nobody@example.org")
	if out := ok(t, cfg, "", "mailbox", "export", "alice@example.org"); out != "" {
		t.Errorf("export of an empty INBOX: %q", out)
	}

	// Deliver one message straight into the store, then list and export.
	st, err := sqlite.Open(filepath.Join(filepath.Dir(cfg), "data"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.UserByAddress(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	bw, err := st.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	msg := "Subject: hi\r\n\r\nFrom the start of a line\r\n>From quoted\r\n"
	bw.Write([]byte(msg))
	err = st.Deliver(context.Background(), &store.Delivery{
		Blob: bw, From: "sender@example.net", Received: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		Recipients: []store.LocalRecipient{{UserID: u.ID, Mailbox: "INBOX", Prefix: []byte("Return-Path: <sender@example.net>\r\n")}},
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	out = ok(t, cfg, "", "mailbox", "list", "alice@example.org")
	if !regexp.MustCompile(`(?m)^INBOX +1 +1 +\d+$`).MatchString(out) {
		t.Errorf("mailbox list after a delivery:\n%s", out)
	}
	out = ok(t, cfg, "", "mailbox", "export", "alice@example.org")
	if !strings.HasPrefix(out, "From sender@example.net ") {
		t.Errorf("export does not start with a From_ line: %q", out)
	}
	for _, want := range []string{"Return-Path: <sender@example.net>\n", "Subject: hi\n", "\n>From the start of a line\n", "\n>>From quoted\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("export lacks %q:\n%s", want, out)
		}
	}
	if out := ok(t, cfg, "", "mailbox", "export", "alice@example.org", "--mailbox", "Sent"); out != "" {
		t.Errorf("export of an empty Sent: %q", out)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("hostname = \"mail.example.org\"\nhostnme = \"typo\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	line := fails(t, 2, "", bad, "", "domain", "list")
	if want := "postern: " + bad + ": hostnme: unknown key"; line != want {
		t.Errorf("stderr %q, want %q", line, want)
	}
	// The same for every command that reads the config, serve included.
	fails(t, 2, bad+": hostnme: unknown key", bad, "", "serve")
	fails(t, 2, bad+": hostnme: unknown key", bad, "", "user", "list")

	if err := os.WriteFile(bad, []byte("[limits]\nmax_recipients = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, 2, bad+": limits.max_recipients: must be from 1 to 100000 (got 0)", bad, "", "domain", "list")
	if err := os.WriteFile(bad, []byte("hostname = \"unterminated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, 2, bad+":1: hostname:", bad, "", "domain", "list")
	missing := filepath.Join(dir, "missing.toml")
	fails(t, 2, missing+": cannot read: no such file or directory", missing, "", "domain", "list")
}

func TestUsageErrors(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "postern"`},
		{[]string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"domain", "list", "--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"user", "add", "a@example.org", "-x"}, "unknown shorthand flag: 'x' in -x"},
		{[]string{"domain", "add"}, "accepts 1 arg(s), received 0"},
		{[]string{"domain", "add", "a.example", "b.example"}, "accepts 1 arg(s), received 2"},
		{[]string{"domain", "list", "extra"}, "unknown command \"extra\" for \"postern domain list\""},
		{[]string{"user", "list", "extra"}, "unknown command \"extra\" for \"postern user list\""},
		{[]string{"version", "extra"}, "unknown command \"extra\" for \"postern version\""},
		{[]string{"mailbox", "export", "a@example.org", "--mailbox"}, "flag needs an argument: --mailbox"},
		{[]string{"serve", "--log-level", "loud"}, "--log-level"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fails(t, 2, tc.want, cfg, "", tc.args...)
		})
	}
}

// TestUnknownSubcommand checks that an unknown subcommand of a command
// group is a usage error, not a request for help.
func TestUnknownSubcommand(t *testing.T) {
	cfg := testConfig(t)
	for _, args := range [][]string{{"domain", "frobnicate"}, {"user", "frobnicate", "x"}, {"alias", "lst"}, {"mailbox", "exprot", "a@example.org"}} {
		r := cli(t, cfg, "", args...)
		if r.code != 2 {
			t.Errorf("postern %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	if out := ok(t, "", "", "version"); out != "postern "+Version+"\n" {
		t.Errorf("version: %q", out)
	}
	if out := ok(t, "", "", "--help"); !strings.Contains(out, "domain") || !strings.Contains(out, "serve") {
		t.Errorf("--help does not list the commands: %q", out)
	}
	// A command group without a subcommand shows its help.
	if out := ok(t, "", "", "user"); !strings.Contains(out, "passwd") {
		t.Errorf("user: %q", out)
	}
}
