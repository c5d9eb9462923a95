package imapd

import (
	"errors"
	"io"

	"github.com/emersion/go-imap/v2"

	"github.com/postern-mail/postern/internal/store"
)

// Append stores a message with its flags and internal date (RFC 9051
// 6.3.12) durably, and answers APPENDUID (RFC 4315). Go-imap refuses a
// literal above AppendLimit with NO [TOOBIG] before its continuation.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mb, err := s.target(mailbox)
	if err != nil {
		return nil, err
	}
	sys, kws, err := parseFlags(options.Flags)
	if err != nil {
		return nil, err
	}
	bw, err := s.srv.backend.NewBlob()
	if err != nil {
		return nil, s.storeError("append", err)
	}
	n, err := io.Copy(bw, io.LimitReader(r, s.srv.cfg.MaxMessageBytes+1))
	if err != nil {
		bw.Abort()
		return nil, err
	}
	if n > s.srv.cfg.MaxMessageBytes {
		bw.Abort()
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
	}
	if n == 0 {
		bw.Abort()
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Empty message"}
	}
	uid, uv, err := s.srv.backend.AppendMessage(s.ctx(), mb.ID, &store.Append{Blob: bw, Flags: sys, Keywords: kws, InternalDate: options.Time})
	if errors.Is(err, store.ErrNotFound) {
		return nil, noMailbox()
	}
	if err != nil {
		return nil, s.storeError("append", err)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: uv}, nil
}
