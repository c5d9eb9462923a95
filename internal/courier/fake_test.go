package courier

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a scripted SMTP peer for what go-smtp's server will not do
// (no EHLO, a refusing greeting). answer returns the reply to a command
// line ("" closes the connection); the message text is collected.
type fakeServer struct {
	mu       sync.Mutex
	commands []string
	data     []string
}

func startFake(t *testing.T, ip string, port int, greeting string, answer func(cmd string) string) *fakeServer {
	t.Helper()
	l := listen(t, ip, port)
	t.Cleanup(func() { l.Close() })
	f := &fakeServer{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c, greeting, answer)
		}
	}()
	return f
}

func (f *fakeServer) serve(c net.Conn, greeting string, answer func(string) string) {
	defer c.Close()
	br := bufio.NewReader(c)
	c.Write([]byte(greeting + "\r\n"))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.commands = append(f.commands, cmd)
		f.mu.Unlock()
		r := answer(cmd)
		if r == "" {
			return
		}
		c.Write([]byte(r + "\r\n"))
		if strings.EqualFold(cmd, "DATA") && strings.HasPrefix(r, "354") {
			var msg strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			f.mu.Lock()
			f.data = append(f.data, msg.String())
			f.mu.Unlock()
			c.Write([]byte("250 2.0.0 queued as 42\r\n"))
		}
		if strings.EqualFold(cmd, "QUIT") {
			return
		}
	}
}

func (f *fakeServer) log() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...), append([]string(nil), f.data...)
}

// oldServer speaks RFC 821: no EHLO.
func oldServer(cmd string) string {
	switch verb, _, _ := strings.Cut(strings.ToUpper(cmd), " "); verb {
	case "EHLO":
		return "502 5.5.1 command not recognized"
	case "HELO", "MAIL", "RCPT", "RSET", "NOOP":
		return "250 ok"
	case "DATA":
		return "354 go on"
	case "QUIT":
		return "221 bye"
	}
	return "500 what"
}

func TestHELOFallback(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	f := startFake(t, "127.0.0.1", port, "220 old.example SMTP", oldServer)
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	att := deliver(t, c, "example.org", "a@sender.test", "Subject: x\n\n.hi\n", "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if !strings.Contains(att.Results[0].Text, "queued as 42") {
		t.Errorf("text = %q", att.Results[0].Text)
	}
	cmds, data := f.log()
	want := []string{"EHLO mail.sender.test", "HELO mail.sender.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<b@example.org>", "DATA"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Errorf("commands = %q, want %q", cmds, want)
	}
	// Dot-stuffed on the wire, CRLF everywhere.
	if len(data) != 1 || data[0] != "Subject: x\r\n\r\n..hi\r\n" {
		t.Errorf("data = %q", data)
	}
}

func TestGreetingRefused(t *testing.T) {
	port := freePort(t, "127.0.0.1", "127.0.0.2")
	startFake(t, "127.0.0.1", port, "554 5.7.1 go away", oldServer)
	ok := startReceiver(t, "127.0.0.2", port)
	c := newCourier(t, port, zone(
		"example.org. MX 10 mx1.example.org.", "mx1.example.org. A 127.0.0.1",
		"example.org. MX 20 mx2.example.org.", "mx2.example.org. A 127.0.0.2",
		"only.example. MX 10 mx1.example.org.",
	))
	// Another MX is tried after a 5xx greeting.
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	if _, _, _, msgs := ok.snapshot(); len(msgs) != 1 {
		t.Errorf("second MX got %d messages", len(msgs))
	}
	// The only MX refusing is the domain's answer.
	att := deliver(t, c, "only.example", "a@sender.test", testMsg, "b@only.example")
	wantCodes(t, att, "554 5.7.1")
	if !strings.Contains(att.Results[0].Text, "go away") {
		t.Errorf("text = %q", att.Results[0].Text)
	}
}

// A server that offers STARTTLS but refuses it gets the message in
// plaintext on the same connection.
func TestSTARTTLSRefused(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	f := startFake(t, "127.0.0.1", port, "220 odd.example ESMTP", func(cmd string) string {
		switch verb, _, _ := strings.Cut(strings.ToUpper(cmd), " "); verb {
		case "EHLO":
			return "250-odd.example\r\n250-SIZE 1000\r\n250 STARTTLS"
		case "STARTTLS":
			return "454 4.7.0 TLS not available"
		}
		return oldServer(cmd)
	})
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	att := deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org")
	wantCodes(t, att, "250 2.0.0")
	if att.TLS != "" {
		t.Errorf("TLS = %q", att.TLS)
	}
	cmds, _ := f.log()
	want := []string{"EHLO mail.sender.test", "STARTTLS", "MAIL FROM:<a@sender.test> SIZE=" + strconv.Itoa(len(testMsg)), "RCPT TO:<b@example.org>", "DATA"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Errorf("commands = %q, want %q", cmds, want)
	}
}

// An idle connection that dies after answering RSET (at the EHLO that
// go-smtp sends after it) is replaced by a new one for the same message.
func TestReusedConnectionDiesAfterRSET(t *testing.T) {
	defer func(d time.Duration) { probeIdleAfter = d }(probeIdleAfter)
	probeIdleAfter = 0 // always probe
	port := freePort(t, "127.0.0.1")
	var mu sync.Mutex
	rsets := 0
	f := startFake(t, "127.0.0.1", port, "220 flaky.example ESMTP", func(cmd string) string {
		mu.Lock()
		defer mu.Unlock()
		switch verb, _, _ := strings.Cut(strings.ToUpper(cmd), " "); verb {
		case "EHLO":
			if rsets == 1 {
				rsets++
				return "" // hang up
			}
			return "250-flaky.example\r\n250 8BITMIME"
		case "RSET":
			rsets++
			return "250 ok"
		}
		return oldServer(cmd)
	})
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "b@example.org"), "250 2.0.0")
	wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, "c@example.org"), "250 2.0.0")
	cmds, data := f.log()
	if len(data) != 2 {
		t.Fatalf("%d messages; commands %q", len(data), cmds)
	}
	if n := strings.Count(strings.Join(cmds, "|"), "EHLO"); n != 3 {
		t.Errorf("%d EHLO, want 3 (new, after RSET, new): %q", n, cmds)
	}
}

// A connection reused right after a transaction goes straight to MAIL (no
// RSET, no second EHLO); one that died is replaced for the same message.
func TestFreshlyPooledConnectionSkipsRSET(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	var mu sync.Mutex
	mails := 0
	f := startFake(t, "127.0.0.1", port, "220 quick.example ESMTP", func(cmd string) string {
		mu.Lock()
		defer mu.Unlock()
		switch verb, _, _ := strings.Cut(strings.ToUpper(cmd), " "); verb {
		case "EHLO":
			return "250-quick.example\r\n250 8BITMIME"
		case "MAIL":
			if mails++; mails == 3 {
				return "" // hang up at the third message's MAIL
			}
		}
		return oldServer(cmd)
	})
	c := newCourier(t, port, zone("example.org. MX 10 mx.example.org.", "mx.example.org. A 127.0.0.1"))
	for _, rcpt := range []string{"b@example.org", "c@example.org", "d@example.org"} {
		wantCodes(t, deliver(t, c, "example.org", "a@sender.test", testMsg, rcpt), "250 2.0.0")
	}
	cmds, data := f.log()
	want := "EHLO|MAIL|RCPT|DATA|MAIL|RCPT|DATA|MAIL|EHLO|MAIL|RCPT|DATA"
	var verbs []string
	for _, c := range cmds {
		v, _, _ := strings.Cut(c, " ")
		verbs = append(verbs, v)
	}
	if got := strings.Join(verbs, "|"); got != want || len(data) != 3 {
		t.Errorf("commands %s (%d messages), want %s", got, len(data), want)
	}
}
