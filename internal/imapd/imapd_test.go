package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern-mail/postern/internal/auth"
)

func TestPlainListenerRequiresTLSForLogin(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, false)
	caps := r.ok("CAPABILITY")
	if !has(caps, "LOGINDISABLED", "STARTTLS") || has(caps, "AUTH=") {
		t.Fatalf("capabilities before TLS: %q", caps)
	}
	r.expect("NO [PRIVACYREQUIRED]", "LOGIN %q %q", testUser, testPass)
	r.expect("NO [PRIVACYREQUIRED]", "AUTHENTICATE PLAIN")

	c, err := imapclient.DialStartTLS(e.plainAddr, &imapclient.Options{TLSConfig: e.clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login after STARTTLS: %v", err)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, true)
	caps := r.ok("CAPABILITY")
	if !has(caps, "AUTH=PLAIN") || has(caps, "LOGINDISABLED") {
		t.Fatalf("capabilities over TLS: %q", caps)
	}
	_, wrongPass := r.cmd("LOGIN %q %q", testUser, "wrong")
	_, unknown := r.cmd("LOGIN %q %q", "nobody@example.test", "wrong")
	if !strings.HasPrefix(wrongPass, "NO") || wrongPass != unknown {
		t.Fatalf("wrong password %q, unknown user %q", wrongPass, unknown)
	}
	// AUTHENTICATE PLAIN with an initial response (SASL-IR).
	r.ok("AUTHENTICATE PLAIN %s", "AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl")
}

func TestCapabilitiesAfterLogin(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, true)
	r.login()
	caps := strings.Join(r.ok("CAPABILITY"), " ")
	for _, c := range []string{"IMAP4rev2", "IMAP4rev1", "IDLE", "MOVE", "UIDPLUS", "UNSELECT", "ENABLE", "NAMESPACE",
		"ESEARCH", "SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "SPECIAL-USE", "CREATE-SPECIAL-USE",
		"LITERAL+", "BINARY", "CHILDREN", "SASL-IR", "APPENDLIMIT=1048576"} {
		if !strings.Contains(caps+" ", " "+c+" ") {
			t.Errorf("capability %s missing from %q", c, caps)
		}
	}
}

func TestSelectFetchStoreSearch(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	e.deliver(t, strings.Replace(sampleMsg, "Subject: Hello there", "Subject: Second", 1))
	c := e.client(t, nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("select %+v", sel)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("fetch %v %v", msgs, err)
	}
	m := msgs[0]
	if m.UID != 1 || m.Envelope.Subject != "Hello there" || m.Envelope.From[0].Addr() != "bob@example.org" || len(m.Flags) != 1 || m.Flags[0] != flagRecent {
		t.Fatalf("message 1: %+v", m)
	}
	body := string(m.BodySection[0].Bytes)
	if !strings.HasPrefix(body, "Delivered-To: "+testUser+"\r\n") || m.RFC822Size != int64(len(body)) {
		t.Fatalf("body %q size %d", body, m.RFC822Size)
	}

	// Partial fetch without PEEK sets \Seen and returns it.
	msgs, err = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 3, Size: 5}}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	if got := string(msgs[0].BodySection[0].Bytes); got != "Alice" {
		t.Fatalf("partial %q", got)
	}
	if len(msgs[0].Flags) != 2 || msgs[0].Flags[0] != imap.FlagSeen {
		t.Fatalf("implicit \\Seen: %v", msgs[0].Flags)
	}

	// STORE with keywords.
	msgs, err = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 3 {
		t.Fatalf("store %+v %v", msgs, err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\Bogus`}}, nil).Collect(); err == nil {
		t.Fatal("unknown system flag accepted")
	}

	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want []uint32
	}{
		{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{2}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$work"}}, []uint32{1}},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "second"}}}, []uint32{2}},
		{"from name", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob example"}}}, []uint32{1, 2}},
		{"body", imap.SearchCriteria{Body: []string{"QUICK BROWN"}}, []uint32{1, 2}},
		{"text header", imap.SearchCriteria{Text: []string{"m1@example.org"}}, []uint32{1, 2}},
		{"larger", imap.SearchCriteria{Larger: 10000}, nil},
		{"sentsince", imap.SearchCriteria{SentSince: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}, []uint32{1, 2}},
		{"sentbefore", imap.SearchCriteria{SentBefore: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}, nil},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagFlagged}}}}, []uint32{2}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Flag: []imap.Flag{imap.FlagSeen}}}}}, []uint32{1, 2}},
		{"uid star", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 0, Stop: 0}}}}, []uint32{2}},
	} {
		res, err := c.Search(&tc.c, nil).Wait()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := res.AllSeqNums()
		if len(got) != len(tc.want) || (len(got) > 0 && !equal(got, tc.want)) {
			t.Errorf("search %s: got %v want %v", tc.name, got, tc.want)
		}
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCopyMoveExpungeAppend(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.deliver(t, sampleMsg)
	}
	c := e.client(t, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.DestUIDs.String() != "1:2" || cd.SourceUIDs.String() != "1:2" {
		t.Fatalf("copy %+v %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("copy to missing mailbox: %v", err)
	}
	md, err := c.Move(imap.SeqSetNum(3), "Trash").Wait()
	if err != nil || md.DestUIDs.String() != "1" || md.SourceUIDs.String() != "3" {
		t.Fatalf("move %+v %v", md, err)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Fatalf("after move the client sees %d messages", n)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	exp, err := c.Expunge().Collect()
	if err != nil || len(exp) != 1 || exp[0] != 1 {
		t.Fatalf("expunge %v %v", exp, err)
	}
	// UID EXPUNGE only touches the named UIDs.
	c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	if exp, err := c.UIDExpunge(imap.UIDSetNum(1)).Collect(); err != nil || len(exp) != 0 {
		t.Fatalf("uid expunge of another uid: %v %v", exp, err)
	}
	if exp, err := c.UIDExpunge(imap.UIDSetNum(2)).Collect(); err != nil || len(exp) != 1 {
		t.Fatalf("uid expunge: %v %v", exp, err)
	}

	// APPEND with flags and internal date, then find it.
	date := time.Date(2021, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	msg := "Subject: appended\r\n\r\nappended body\r\n"
	ac := c.Append("Drafts", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Later"}, Time: date})
	ac.Write([]byte(msg))
	ac.Close()
	ad, err := ac.Wait()
	if err != nil || ad.UID != 1 {
		t.Fatalf("append %+v %v", ad, err)
	}
	if _, err := c.Select("Drafts", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	if !msgs[0].InternalDate.Equal(date) || string(msgs[0].BodySection[0].Bytes) != msg || len(msgs[0].Flags) != 3 {
		t.Fatalf("appended: %+v", msgs[0])
	}
	st, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 || *st.NumUnseen != 2 || *st.Size == 0 {
		t.Fatalf("status %+v %v", st, err)
	}
}

func TestIdleSeesDeliveryAndOtherSessionsChanges(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	var mu sync.Mutex
	var exists []uint32
	var expunged []uint32
	var flagged []uint32
	changed := make(chan struct{}, 16)
	h := &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = append(exists, *d.NumMessages)
				mu.Unlock()
				changed <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
			changed <- struct{}{}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			mu.Lock()
			flagged = append(flagged, m.SeqNum)
			mu.Unlock()
			for m.Next() != nil {
			}
			changed <- struct{}{}
		},
	}
	watcher := e.client(t, h)
	if _, err := watcher.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(time.Second):
			t.Fatalf("%s not seen within 1s while IDLE", what)
		}
	}
	start := time.Now()
	e.deliver(t, sampleMsg)
	wait("EXISTS after delivery")
	t.Logf("EXISTS after %v", time.Since(start))

	other := e.client(t, nil)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	wait("FETCH FLAGS from another session")
	if _, err := other.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	wait("EXPUNGE from another session")
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(exists) != 1 || exists[0] != 2 || len(flagged) != 1 || flagged[0] != 1 || len(expunged) != 1 || expunged[0] != 1 {
		t.Fatalf("exists %v flags %v expunged %v", exists, flagged, expunged)
	}
	// Sequence numbers stay right: the watcher now has one message, UID 2.
	msgs, err := watcher.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Fatalf("after expunge: %+v %v", msgs, err)
	}
}

func TestExamineIsReadOnly(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	u := r.expect("OK [READ-ONLY]", "EXAMINE INBOX")
	if !has(u, "PERMANENTFLAGS ()") {
		t.Fatalf("examine: %q", u)
	}
	r.expect("NO", "STORE 1 +FLAGS (\\Seen)")
	r.expect("NO", "EXPUNGE")
	r.expect("NO", "MOVE 1 Trash")
	u = r.ok("FETCH 1 (BODY[TEXT])")
	if has(u, "\\Seen") {
		t.Fatalf("EXAMINE set \\Seen: %q", u)
	}
	r.ok("COPY 1 Trash")
	r.ok("CLOSE")
	u = r.expect("OK [READ-WRITE]", "SELECT INBOX")
	if !has(u, "1 EXISTS") || !has(u, "1 RECENT") || !has(u, "PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)") {
		t.Fatalf("select: %q", u)
	}
	u = r.ok("FETCH 1 FLAGS")
	if !has(u, "\\Recent") {
		t.Fatalf("first SELECT does not see \\Recent: %q", u)
	}
	r.expect("BAD", "FETCH 5 FLAGS")
	u = r.ok("STORE 1 +FLAGS (NewKeyword)")
	if !has(u, "* FLAGS (", "NewKeyword") || !has(u, "FETCH (FLAGS (", "NewKeyword") {
		t.Fatalf("no FLAGS update for a new keyword: %q", u)
	}
}

func TestMailboxManagement(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, true)
	r.login()
	u := r.ok(`LIST "" "*"`)
	for _, want := range []string{`(\HasNoChildren) "/" INBOX`, `(\HasNoChildren \Sent) "/" "Sent"`, `(\HasNoChildren \Trash) "/" "Trash"`} {
		if !has(u, want) {
			t.Errorf("LIST lacks %s: %q", want, u)
		}
	}
	u = r.ok(`LIST "" ""`)
	if !has(u, `(\Noselect) "/" ""`) {
		t.Fatalf("root: %q", u)
	}
	r.ok("CREATE Work/2026/Q1")
	r.ok("CREATE Projects (USE (\\Archive))")
	r.expect("NO", "CREATE Bad (USE (\\Bogus))")
	r.expect("NO [ALREADYEXISTS]", "CREATE inbox")
	u = r.ok(`LIST "" "Work*"`)
	if !has(u, `(\Noselect \HasChildren) "/" "Work"`) || !has(u, `(\HasNoChildren) "/" "Work/2026/Q1"`) {
		t.Fatalf("implicit parents: %q", u)
	}
	u = r.ok(`LIST "" "%%"`)
	if has(u, "Work/2026") || !has(u, `"/" "Work"`) {
		t.Fatalf("%% pattern: %q", u)
	}
	u = r.ok(`LIST (SPECIAL-USE) "" "*"`)
	if len(u) != 6 || !has(u, `\Archive) "/" "Projects"`) {
		t.Fatalf("special-use selection: %q", u)
	}
	r.ok("SUBSCRIBE Work/2026/Q1")
	r.ok("RENAME Work Job")
	u = r.ok(`LIST "" "Job/*" RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT SIZE))`)
	if !has(u, `\Subscribed) "/" "Job/2026/Q1"`) || !has(u, `STATUS "Job/2026/Q1" (MESSAGES 0 UIDNEXT 1 SIZE 0)`) {
		t.Fatalf("renamed with status: %q", u)
	}
	r.ok("DELETE Job/2026/Q1")
	u = r.ok(`LIST (SUBSCRIBED) "" "*"`)
	if !has(u, `(\NonExistent \Subscribed) "/" "Job/2026/Q1"`) {
		t.Fatalf("subscription of a deleted mailbox: %q", u)
	}
	u = r.ok(`LSUB "" "*"`)
	if !has(u, `LSUB (\Noselect) "/" "Job/2026/Q1"`) {
		t.Fatalf("lsub: %q", u)
	}
	r.expect("NO", "DELETE INBOX")
	r.expect("NO", "SELECT Job/2026/Q1")
	r.ok("APPEND INBOX {5+}\r\nHello")
	r.ok("RENAME INBOX Old")
	u = r.ok("STATUS Old (MESSAGES)")
	if !has(u, "MESSAGES 1") {
		t.Fatalf("INBOX rename: %q", u)
	}
	u = r.ok("STATUS INBOX (MESSAGES UIDNEXT)")
	if !has(u, "MESSAGES 0", "UIDNEXT 2") {
		t.Fatalf("INBOX after rename: %q", u)
	}
	u = r.ok("NAMESPACE")
	if !has(u, `NAMESPACE (("" "/")) NIL NIL`) {
		t.Fatalf("namespace: %q", u)
	}
}

func TestAppendTooLargeRefusedBeforeLiteral(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, true)
	r.login()
	r.send("a1 APPEND INBOX {2000000}")
	if l := r.line(); !strings.HasPrefix(l, "a1 NO [TOOBIG]") {
		t.Fatalf("got %q", l)
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnectionsPerIP = 2 })
	e.raw(t, true)
	e.raw(t, false)
	conn, err := net.Dial("tcp", e.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("third connection got %q", l)
	}
}

// TestLoginRefusedAfterMaxFailures: the failure that reaches MaxPerIP is
// answered like any other; then the IP is in its cool-down: LOGIN gets NO
// [UNAVAILABLE] even with the right password, and new connections (plain
// and implicit TLS) get a BYE greeting, until the cool-down ends.
func TestLoginRefusedAfterMaxFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, func(c *Config) {
		c.Throttle = &auth.Throttle{MaxPerIP: 3, Window: time.Minute, Cooldown: 10 * time.Minute, Now: clock}
	})
	r := e.raw(t, true)
	for i := 0; i < 3; i++ {
		r.expect("NO [AUTHENTICATIONFAILED]", "LOGIN %q %q", testUser, fmt.Sprint("guess", i))
	}
	r.expect("NO [UNAVAILABLE]", "LOGIN %q %q", testUser, testPass)
	r.expect("NO [UNAVAILABLE]", "LOGIN %q %q", "nobody@example.test", "x")
	for _, implicitTLS := range []bool{false, true} {
		var conn net.Conn
		var err error
		if implicitTLS {
			conn, err = tls.Dial("tcp", e.tlsAddr, e.clientTLS)
		} else {
			conn, err = net.Dial("tcp", e.plainAddr)
		}
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "* BYE [UNAVAILABLE] ") {
			t.Errorf("new connection (implicit TLS %v) in the cool-down: %q, want * BYE [UNAVAILABLE]", implicitTLS, l)
		}
		if _, err := br.ReadString('\n'); err == nil {
			t.Errorf("connection (implicit TLS %v) left open after BYE", implicitTLS)
		}
		conn.Close()
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	e.raw(t, true).login()
}

func TestIdleTimeoutEndsSilentSessions(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 500 * time.Millisecond })
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.send("a1 IDLE")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := r.br.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("session lasted %v after going silent", d)
	}
}

// panicky makes LIST panic, as a bug in a backend would.
type panicky struct{ Backend }

func (panicky) Subscriptions(context.Context, int64) ([]string, error) { panic("test panic") }

func TestPanicEndsOnlyThatSession(t *testing.T) {
	e := newEnv(t)
	other := e.raw(t, true)
	other.login()
	other.ok("SELECT INBOX")
	e.srv.backend = panicky{e.st}
	r := e.raw(t, true)
	r.login()
	r.send(`a1 LIST "" "*"`)
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.br.ReadString('\n'); err == nil {
		t.Fatal("the panicking session still answers")
	}
	e.srv.backend = e.st
	other.ok("NOOP")
	r2 := e.raw(t, true)
	r2.login()
}

func TestCloseExpungesDeleted(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	e.deliver(t, sampleMsg)
	r := e.raw(t, true)
	r.login()
	r.ok("SELECT INBOX")
	r.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
	if u := r.ok("CLOSE"); has(u, "EXPUNGE") {
		t.Fatalf("CLOSE sent EXPUNGE: %q", u)
	}
	u := r.ok("STATUS INBOX (MESSAGES UIDNEXT)")
	if !has(u, "MESSAGES 1", "UIDNEXT 3") {
		t.Fatalf("after CLOSE: %q", u)
	}
	r.expect("BAD", "FETCH 1 FLAGS") // no longer selected
}
