package pop3d

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestTransaction walks every transaction-state command on three messages
// and checks what QUIT leaves in the store.
func TestTransaction(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		e.deliver(t, strings.Replace(sampleMsg, "Hello", fmt.Sprintf("Hello %d", i), 1))
	}
	size := len("Delivered-To: "+testUser+"\r\n") + len(sampleMsg) + 2 // "Hello n"
	c := e.login(t)

	if got, want := c.ok("STAT"), fmt.Sprintf("+OK 3 %d", 3*size); got != want {
		t.Fatalf("STAT = %q, want %q", got, want)
	}
	list := c.okMulti("LIST")
	if want := []string{fmt.Sprintf("1 %d", size), fmt.Sprintf("2 %d", size), fmt.Sprintf("3 %d", size)}; !slices.Equal(list, want) {
		t.Fatalf("LIST = %q, want %q", list, want)
	}
	if got, want := c.ok("LIST 2"), fmt.Sprintf("+OK 2 %d", size); got != want {
		t.Fatalf("LIST 2 = %q, want %q", got, want)
	}
	uidl := c.okMulti("UIDL")
	if len(uidl) != 3 {
		t.Fatalf("UIDL = %q", uidl)
	}
	ids := map[string]bool{}
	for i, l := range uidl {
		n, id, _ := strings.Cut(l, " ")
		if n != fmt.Sprint(i+1) || len(id) < 1 || len(id) > 70 || ids[id] {
			t.Fatalf("UIDL line %q", l)
		}
		for _, r := range id {
			if r < 0x21 || r > 0x7e {
				t.Fatalf("UIDL %q has a character outside 0x21-0x7E", id)
			}
		}
		ids[id] = true
	}
	if got := c.ok("UIDL 3"); got != "+OK "+uidl[2] {
		t.Fatalf("UIDL 3 = %q, want +OK %s", got, uidl[2])
	}

	if got := c.ok("RETR 2"); got != fmt.Sprintf("+OK %d octets", size) {
		t.Fatalf("RETR status %q", got)
	}
	body := strings.Join(c.multi(), "\r\n") + "\r\n"
	if want := "Delivered-To: " + testUser + "\r\n" + strings.Replace(sampleMsg, "Hello", "Hello 2", 1); body != want {
		t.Fatalf("RETR 2 =\n%q\nwant\n%q", body, want)
	}
	if top := c.okMulti("TOP 1 0"); !slices.Equal(top, []string{"Delivered-To: " + testUser, "From: Bob <bob@example.org>", "To: alice@example.test", "Subject: Hello 1", ""}) {
		t.Fatalf("TOP 1 0 = %q", top)
	}
	if top := c.okMulti("TOP 1 2"); len(top) != 7 || top[5] != "line one" || top[6] != "line two" {
		t.Fatalf("TOP 1 2 = %q", top)
	}
	if top := c.okMulti("TOP 1 100"); len(top) != 8 || top[7] != "line three" {
		t.Fatalf("TOP 1 100 = %q", top)
	}

	c.ok("NOOP")
	c.ok("DELE 2")
	c.fail("DELE 2", "deleted")
	c.fail("RETR 2", "deleted")
	c.fail("LIST 2", "deleted")
	if got, want := c.ok("STAT"), fmt.Sprintf("+OK 2 %d", 2*size); got != want {
		t.Fatalf("STAT after DELE = %q, want %q", got, want)
	}
	if list := c.okMulti("LIST"); len(list) != 2 || !strings.HasPrefix(list[1], "3 ") {
		t.Fatalf("LIST after DELE = %q (numbers must not shift)", list)
	}
	if got, want := c.ok("RSET"), fmt.Sprintf("+OK 3 messages (%d octets)", 3*size); got != want {
		t.Fatalf("RSET = %q, want %q", got, want)
	}
	c.ok("RETR 2")
	c.multi()
	c.ok("DELE 1")
	c.ok("DELE 3")
	if uids := e.inbox(t); len(uids) != 3 {
		t.Fatalf("store has %v before QUIT; DELE must wait for the UPDATE state", uids)
	}
	if got := c.ok("QUIT"); !strings.Contains(got, "2 messages deleted") {
		t.Fatalf("QUIT = %q", got)
	}
	if !c.closed() {
		t.Fatal("connection still open after QUIT")
	}
	if uids := e.inbox(t); !slices.Equal(uids, []uint32{2}) {
		t.Fatalf("INBOX after QUIT = %v, want [2]", uids)
	}

	// The UIDL of the message left is the same in the next session.
	c = e.login(t)
	if got := c.ok("UIDL 1"); got != "+OK 1 "+strings.SplitN(uidl[1], " ", 2)[1] {
		t.Fatalf("UIDL 1 in the next session = %q, was %q as message 2", got, uidl[1])
	}
	c.ok("QUIT")
}

// TestEmptyMaildrop answers an empty INBOX.
func TestEmptyMaildrop(t *testing.T) {
	e := newEnv(t)
	c := e.login(t)
	if got := c.ok("STAT"); got != "+OK 0 0" {
		t.Fatalf("STAT = %q", got)
	}
	if l := c.okMulti("LIST"); len(l) != 0 {
		t.Fatalf("LIST = %q", l)
	}
	if l := c.okMulti("UIDL"); len(l) != 0 {
		t.Fatalf("UIDL = %q", l)
	}
	c.fail("RETR 1", "No such message")
	c.ok("QUIT")
}

// TestSnapshot: messages arriving during a session are not part of it
// (RFC 1939), and the next session sees them.
func TestSnapshot(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	c := e.login(t)
	e.deliver(t, sampleMsg)
	if got := c.ok("STAT"); !strings.HasPrefix(got, "+OK 1 ") {
		t.Fatalf("STAT = %q, want 1 message", got)
	}
	c.fail("RETR 2", "No such message")
	c.ok("DELE 1")
	c.ok("QUIT")
	c = e.login(t)
	if got := c.ok("STAT"); !strings.HasPrefix(got, "+OK 1 ") {
		t.Fatalf("STAT in the next session = %q, want the later message", got)
	}
	c.ok("QUIT")
}

// TestDroppedConnectionDeletesNothing: DELE without QUIT changes nothing,
// and the user's lock is released.
func TestDroppedConnectionDeletesNothing(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.deliver(t, sampleMsg)
	}
	c := e.login(t)
	c.ok("DELE 1")
	c.ok("DELE 2")
	c.ok("DELE 3")
	c.conn.Close()

	// The next login must succeed once the server has noticed the drop.
	var c2 *client
	for i := 0; ; i++ {
		c2 = e.dialTLS(t)
		c2.ok("USER " + testUser)
		r := c2.cmd("PASS " + testPass)
		if strings.HasPrefix(r, "+OK") {
			break
		}
		if i == 50 || !strings.Contains(r, "[IN-USE]") {
			t.Fatalf("login after a dropped session: %q", r)
		}
		c2.conn.Close()
	}
	if got := c2.ok("STAT"); !strings.HasPrefix(got, "+OK 3 ") {
		t.Fatalf("STAT after a dropped session = %q, want 3 messages", got)
	}
	c2.ok("QUIT")
	if uids := e.inbox(t); len(uids) != 3 {
		t.Fatalf("INBOX = %v, want 3 messages", uids)
	}
}

// TestQuitWithoutLogin and QUIT without deletions.
func TestQuit(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	c := e.dial(t)
	c.ok("QUIT")
	if !c.closed() {
		t.Fatal("connection open after QUIT")
	}
	c = e.login(t)
	if got := c.ok("QUIT"); !strings.Contains(got, "0 messages deleted, 1 left") {
		t.Fatalf("QUIT = %q", got)
	}
	if len(e.inbox(t)) != 1 {
		t.Fatal("message gone without DELE")
	}
}

// TestInUse: one session per user; a second login is refused with
// [IN-USE] until the first ends.
func TestInUse(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, sampleMsg)
	c1 := e.login(t)
	c2 := e.dialTLS(t)
	c2.ok("USER " + testUser)
	c2.fail("PASS "+testPass, "[IN-USE]")
	c2.fail("AUTH PLAIN "+plain("", testUser, testPass), "[IN-USE]")
	c1.ok("QUIT")
	if !c1.closed() {
		t.Fatal("first session not closed")
	}
	c2.ok("AUTH PLAIN " + plain("", testUser, testPass))
	c2.ok("STAT")
	c2.ok("QUIT")
}

// TestPipelining sends a whole session in one write (RFC 2449 6.6) and
// reads every answer in order.
func TestPipelining(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.deliver(t, sampleMsg)
	}
	c := e.dialTLS(t)
	cmds := []string{"CAPA", "USER " + testUser, "PASS " + testPass, "STAT", "LIST", "UIDL", "RETR 1", "TOP 2 0", "DELE 1", "BOGUS", "DELE 3", "LIST 1", "NOOP", "QUIT"}
	var all strings.Builder
	for _, cmd := range cmds {
		all.WriteString(cmd + "\r\n")
	}
	if _, err := c.conn.Write([]byte(all.String())); err != nil {
		t.Fatal(err)
	}
	multi := map[string]bool{"CAPA": true, "LIST": true, "UIDL": true, "RETR 1": true, "TOP 2 0": true}
	for _, cmd := range cmds {
		r := c.line()
		wantErr := cmd == "BOGUS" || cmd == "LIST 1"
		if strings.HasPrefix(r, "-ERR") != wantErr {
			t.Fatalf("%s: %q", redact(cmd), r)
		}
		if multi[cmd] {
			c.multi()
		}
	}
	if !c.closed() {
		t.Fatal("connection open after pipelined QUIT")
	}
	if uids := e.inbox(t); !slices.Equal(uids, []uint32{2}) {
		t.Fatalf("INBOX = %v, want [2]", uids)
	}
}
