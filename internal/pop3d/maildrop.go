package pop3d

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/postern-mail/postern/internal/store"
)

// maildrop is the INBOX as it was at login: message numbers 1..n map to
// UIDs and stay fixed for the session (RFC 1939 5).
type maildrop struct {
	mailboxID   int64
	uidValidity uint32
	msgs        []dropMsg
	total       int64 // size of the messages not marked deleted
}

type dropMsg struct {
	uid     uint32
	size    int64
	deleted bool
}

func openMaildrop(ctx context.Context, b Backend, userID int64) (*maildrop, error) {
	mb, err := b.MailboxByName(ctx, userID, "INBOX")
	if err != nil {
		return nil, err
	}
	entries, err := b.Entries(ctx, mb.ID)
	if err != nil {
		return nil, err
	}
	d := &maildrop{mailboxID: mb.ID, uidValidity: mb.UIDValidity, msgs: make([]dropMsg, len(entries))}
	for i, e := range entries {
		d.msgs[i] = dropMsg{uid: e.UID, size: e.Size}
		d.total += e.Size
	}
	return d, nil
}

// uidl is a message's unique id: UIDVALIDITY and UID in hex, stable for as
// long as the message exists and never reused in the mailbox (RFC 1939 7
// allows 1-70 characters in 0x21..0x7E).
func (d *maildrop) uidl(m *dropMsg) string {
	return fmt.Sprintf("%08x%08x", d.uidValidity, m.uid)
}

// count returns the number of messages not marked deleted.
func (d *maildrop) count() int {
	n := 0
	for i := range d.msgs {
		if !d.msgs[i].deleted {
			n++
		}
	}
	return n
}

// message parses a message-number argument; it answers -ERR itself and
// returns nil for a bad, unknown or deleted number.
func (ss *session) message(arg string) (int, *dropMsg) {
	if arg == "" {
		ss.fail("Message number required")
		return 0, nil
	}
	n, err := strconv.ParseUint(arg, 10, 31)
	if err != nil || arg[0] == '+' {
		ss.fail("Invalid message number")
		return 0, nil
	}
	if n < 1 || n > uint64(len(ss.drop.msgs)) {
		ss.fail("No such message")
		return 0, nil
	}
	m := &ss.drop.msgs[n-1]
	if m.deleted {
		ss.fail("Message %d is marked deleted", n)
		return 0, nil
	}
	return int(n), m
}

// cmdSTAT answers the count and size of the maildrop (RFC 1939 5).
func (ss *session) cmdSTAT(arg string) {
	if arg != "" {
		ss.fail("STAT takes no argument")
		return
	}
	ss.reply("+OK %d %d", ss.drop.count(), ss.drop.total)
}

// cmdLIST gives the size of one message or of every message not deleted.
func (ss *session) cmdLIST(arg string) {
	ss.listing(arg, func(n int, m *dropMsg) string { return fmt.Sprintf("%d %d", n, m.size) })
}

// cmdUIDL gives the unique id of one message or of every one not deleted.
func (ss *session) cmdUIDL(arg string) {
	ss.listing(arg, func(n int, m *dropMsg) string { return fmt.Sprintf("%d %s", n, ss.drop.uidl(m)) })
}

func (ss *session) listing(arg string, line func(int, *dropMsg) string) {
	if arg != "" {
		if strings.Contains(arg, " ") {
			ss.fail("Too many arguments")
			return
		}
		n, m := ss.message(arg)
		if m != nil {
			ss.line("+OK " + line(n, m))
		}
		return
	}
	ss.reply("+OK %d messages (%d octets)", ss.drop.count(), ss.drop.total)
	for i := range ss.drop.msgs {
		if m := &ss.drop.msgs[i]; !m.deleted {
			ss.line(line(i+1, m))
		}
	}
	ss.line(".")
}

// cmdRETR sends a whole message.
func (ss *session) cmdRETR(arg string) {
	if strings.Contains(arg, " ") {
		ss.fail("Too many arguments")
		return
	}
	_, m := ss.message(arg)
	if m == nil {
		return
	}
	ss.send(m, fmt.Sprintf("+OK %d octets", m.size), -1)
}

// cmdTOP sends a message's header and its first n body lines (n=0: the
// header alone).
func (ss *session) cmdTOP(arg string) {
	num, lines, ok := strings.Cut(arg, " ")
	if !ok || strings.Contains(lines, " ") {
		ss.fail("TOP needs a message number and a line count")
		return
	}
	n, err := strconv.ParseUint(lines, 10, 31)
	if err != nil || lines[0] == '+' {
		ss.fail("Invalid line count")
		return
	}
	_, m := ss.message(num)
	if m == nil {
		return
	}
	ss.send(m, "+OK Top of message follows", int(n))
}

// send writes the status line, then the message (dot-stuffed, CRLF) and
// the terminating dot. A store error before any byte is sent is an -ERR; a
// failure while sending leaves the stream unusable and ends the session.
func (ss *session) send(m *dropMsg, status string, bodyLines int) {
	ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
	defer cancel()
	r, err := ss.srv.backend.OpenEntry(ctx, ss.drop.mailboxID, m.uid)
	if errors.Is(err, store.ErrNotFound) {
		ss.fail("[SYS/PERM] Message was removed by another session")
		return
	}
	if err != nil {
		ss.log.Error("pop3 reading message", "uid", m.uid, "err", err)
		ss.fail(errSysTemp)
		return
	}
	defer r.Close()
	ss.line(status)
	if err := writeMessage(ss.bw, r, bodyLines); err != nil {
		ss.log.Error("pop3 sending message", "uid", m.uid, "err", err)
		ss.quit = true
		return
	}
	if bodyLines < 0 {
		messagesRetrieved.Inc()
	}
}

// cmdDELE marks a message for deletion at QUIT.
func (ss *session) cmdDELE(arg string) {
	if strings.Contains(arg, " ") {
		ss.fail("Too many arguments")
		return
	}
	n, m := ss.message(arg)
	if m == nil {
		return
	}
	m.deleted = true
	ss.drop.total -= m.size
	ss.reply("+OK Message %d marked deleted", n)
}

// cmdRSET unmarks every message marked deleted.
func (ss *session) cmdRSET(arg string) {
	if arg != "" {
		ss.fail("RSET takes no argument")
		return
	}
	for i := range ss.drop.msgs {
		if m := &ss.drop.msgs[i]; m.deleted {
			m.deleted = false
			ss.drop.total += m.size
		}
	}
	ss.reply("+OK %d messages (%d octets)", ss.drop.count(), ss.drop.total)
}

// update is the UPDATE state (RFC 1939 6): the marked messages are
// expunged in one store commit, which IMAP sessions see as EXPUNGE.
func (ss *session) update() {
	var uids []uint32
	for i := range ss.drop.msgs {
		if m := &ss.drop.msgs[i]; m.deleted {
			uids = append(uids, m.uid)
		}
	}
	left := len(ss.drop.msgs) - len(uids)
	if len(uids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
		defer cancel()
		if _, err := ss.srv.backend.Expunge(ctx, ss.drop.mailboxID, uids); err != nil {
			ss.log.Error("pop3 update: expunge failed", "uids", len(uids), "err", err)
			ss.fail("[SYS/TEMP] Deleted messages were not removed; try again")
			return
		}
		messagesDeleted.Add(float64(len(uids)))
	}
	ss.log.Info("pop3 logout", "deleted", len(uids), "left", left)
	ss.reply("+OK Bye, %d messages deleted, %d left", len(uids), left)
}
