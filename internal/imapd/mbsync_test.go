package imapd

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/postern-mail/postern/internal/store"
)

// maildirFiles maps UID (from mbsync's ",U=n" file names) to the file path
// for every message of a Maildir folder.
func maildirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	re := regexp.MustCompile(`,U=(\d+)`)
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			m := re.FindStringSubmatch(e.Name())
			if m == nil {
				t.Fatalf("maildir file without UID: %s", e.Name())
			}
			out[m[1]] = filepath.Join(dir, sub, e.Name())
		}
	}
	return out
}

// setMaildirFlag adds a flag letter to a Maildir file name (moving it to cur).
func setMaildirFlag(t *testing.T, path string, flag byte) {
	t.Helper()
	dir := filepath.Dir(filepath.Dir(path))
	name := filepath.Base(path)
	base, info, ok := strings.Cut(name, ":2,")
	if !ok {
		base = name
	}
	flags := []byte(info + string(flag))
	sort.Slice(flags, func(i, j int) bool { return flags[i] < flags[j] })
	if err := os.Rename(path, filepath.Join(dir, "cur", base+":2,"+string(flags))); err != nil {
		t.Fatal(err)
	}
}

// TestMbsyncTwoWay syncs a few hundred messages with isync's mbsync into a
// Maildir, changes both sides, and checks that a second sync converges.
func TestMbsyncTwoWay(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mbsync not found (CI is set: run scripts/install-test-deps.sh)")
		}
		t.Skip("mbsync (isync) not installed")
	}
	e := newEnv(t)
	const n = 300
	for i := 0; i < n; i++ {
		e.deliver(t, strings.Replace(sampleMsg, "Subject: Hello there", fmt.Sprintf("Subject: message %d", i+1), 1))
	}
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.certDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.tlsAddr)
	maildir := filepath.Join(dir, "mail")
	if err := os.MkdirAll(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf(`IMAPAccount postern
Host %s
Port %s
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN

IMAPStore far
Account postern

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, testUser, testPass, certFile, maildir, maildir)
	rcFile := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func(round int) {
		t.Helper()
		out, err := exec.Command(mbsync, "-c", rcFile, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync round %d: %v\n%s", round, err, out)
		}
	}
	sync(1)
	inbox := filepath.Join(maildir, "INBOX")
	files := maildirFiles(t, inbox)
	if len(files) != n {
		t.Fatalf("first sync: %d messages in the Maildir, want %d", len(files), n)
	}
	for _, name := range []string{"Sent", "Trash", "Archive"} {
		if _, err := os.Stat(filepath.Join(maildir, name)); err != nil {
			t.Errorf("folder %s not synced: %v", name, err)
		}
	}

	// Near side: flag UID 10, delete UID 20. Far side: a new delivery, \Seen on UID 30.
	setMaildirFlag(t, files["10"], 'F')
	if err := os.Remove(files["20"]); err != nil {
		t.Fatal(err)
	}
	e.deliver(t, strings.Replace(sampleMsg, "Subject: Hello there", "Subject: late arrival", 1))
	ctx := context.Background()
	mb, err := e.st.MailboxByName(ctx, e.user.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpdateFlags(ctx, mb.ID, []uint32{30}, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	sync(2)

	es, err := e.st.Entries(ctx, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[uint32]store.Entry{}
	for _, en := range es {
		byUID[en.UID] = en
	}
	if len(es) != n || byUID[10].Flags&store.FlagFlagged == 0 {
		t.Fatalf("server after sync: %d messages, UID 10 flags %v", len(es), byUID[10].Flags)
	}
	if _, ok := byUID[20]; ok {
		t.Fatal("UID 20 deleted in the Maildir is still on the server")
	}
	files = maildirFiles(t, inbox)
	if len(files) != n {
		t.Fatalf("Maildir after sync: %d messages, want %d", len(files), n)
	}
	if !strings.Contains(filepath.Base(files["30"]), ":2,S") {
		t.Fatalf("\\Seen of UID 30 not synced: %s", files["30"])
	}
	if _, ok := files[fmt.Sprint(n+1)]; !ok {
		t.Fatal("the new delivery did not reach the Maildir")
	}
	// A third sync changes nothing.
	sync(3)
	if again := maildirFiles(t, inbox); len(again) != n {
		t.Fatalf("third sync: %d messages", len(again))
	}
}
