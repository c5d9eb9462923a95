package pop3d

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/postern-mail/postern/internal/auth"
)

// FuzzSession feeds arbitrary client input to a whole session (as if over
// implicit TLS, so that login is reachable) and checks that the server
// never panics and always ends the connection. Seeds run with go test;
// go test -fuzz FuzzSession ./internal/pop3d explores further.
func FuzzSession(f *testing.F) {
	login := "USER " + testUser + "\r\nPASS " + testPass + "\r\n"
	for _, seed := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 1 0\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n",
		login + "LIST 1\r\nUIDL 2\r\nRETR 99\r\nTOP 1 x\r\nDELE 1\r\nDELE 1\r\nRETR 1\r\n",
		"AUTH PLAIN\r\n" + plain("", testUser, testPass) + "\r\nSTAT\r\nRETR 1\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH PLAIN AGFsaWNl\r\nAUTH\r\n",
		"\x00\xff\r\n\n\r\r\r\nUSER\r\nPASS\r\nAPOP a b\r\nSTLS\r\n",
		"user " + testUser + "\nPASS wrong\nUSER " + testUser + "\npass " + testPass + "\ntop 1 4294967296\nTOP 1 2147483647\n",
	} {
		f.Add([]byte(seed))
	}
	e := newEnv(f, func(c *Config) {
		c.IdleTimeout = time.Second
		c.FailedLoginDelay = 0
		c.Throttle = auth.NewThrottle()
		c.Throttle.DelayAfter = 0 // thousands of failed logins from one IP: no growing delay
	})
	e.deliver(f, sampleMsg)
	e.deliver(f, "Subject: x\r\n\r\n.\r\n..\r\nno newline")
	f.Fuzz(func(t *testing.T, input []byte) {
		start := time.Now()
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.srv.handle(server, "192.0.2.1", true)
		}()
		go func() {
			client.Write(input)
			client.Write([]byte("\r\nQUIT\r\n"))
		}()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, client)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("session took %v on %q", d, input)
		}
		if e.srv.panics.Load() != 0 {
			t.Fatalf("a session panicked on %q", input)
		}
	})
}
