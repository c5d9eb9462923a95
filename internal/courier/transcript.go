package courier

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// transcript logs an SMTP dialogue at debug level, a line per record, with
// AUTH arguments redacted and the message text left out (STYLE: transcripts
// only at debug level).
type transcript struct {
	log    *slog.Logger
	host   string
	mu     sync.Mutex
	buf    []byte
	mute   bool // during the message text
	inAuth bool // between AUTH and its final reply
	skip   int  // lines not to log
}

func (w *transcript) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mute {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		if w.skip > 0 {
			w.skip--
			continue
		}
		w.log.Debug("smtp transcript", "host", w.host, "line", w.redact(line))
	}
	if len(w.buf) > 4096 {
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// redact hides the credentials in AUTH commands and the SASL exchange
// that follows them. Replies (a three-digit code) pass; a 2xx, 4xx or 5xx
// reply ends the exchange.
func (w *transcript) redact(line string) string {
	if len(line) >= 5 && strings.EqualFold(line[:5], "AUTH ") {
		w.inAuth = true
		mech, _, _ := strings.Cut(line[5:], " ")
		return "AUTH " + mech + " <redacted>"
	}
	if !w.inAuth {
		return line
	}
	if isReply(line) {
		if line[0] != '3' {
			w.inAuth = false
		}
		return line
	}
	return "<redacted>"
}

func isReply(line string) bool {
	return len(line) >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' &&
		line[2] >= '0' && line[2] <= '9' && (len(line) == 3 || line[3] == ' ' || line[3] == '-')
}

// setMute starts or ends leaving the message text out.
func (w *transcript) setMute(m bool, note string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.mute = m
	w.buf = w.buf[:0]
	w.mu.Unlock()
	if note != "" {
		w.log.Debug("smtp transcript", "host", w.host, "line", note)
	}
}

// note logs a line of the dialogue that did not go through go-smtp.
func (w *transcript) note(line string) {
	if w != nil {
		w.log.Debug("smtp transcript", "host", w.host, "line", line)
	}
}
