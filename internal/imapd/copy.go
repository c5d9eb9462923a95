package imapd

import (
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/store"
)

// target finds the mailbox a message is copied, moved or appended to;
// a missing one gets NO [TRYCREATE] (RFC 9051 6.4.7).
func (s *session) target(name string) (store.Mailbox, error) {
	mb, err := s.srv.backend.MailboxByName(s.ctx(), s.user.ID, name)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadName) {
		return mb, noMailbox()
	}
	if err != nil {
		return mb, s.storeError("mailbox", err)
	}
	return mb, nil
}

func copyData(res store.CopyResult) *imap.CopyData {
	d := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.SourceUIDs {
		d.SourceUIDs.AddNum(imap.UID(res.SourceUIDs[i]))
		d.DestUIDs.AddNum(imap.UID(res.DestUIDs[i]))
	}
	return d
}

// Copy answers COPY and UID COPY with COPYUID (RFC 9051 6.4.7, RFC 4315).
// The selected mailbox may be the target: the copies get new UIDs and
// reach the client as EXISTS.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	sel := s.selected()
	_, isSeq := numSet.(imap.SeqSet)
	refs, err := sel.resolve(numSet, isSeq)
	if err != nil {
		return nil, err
	}
	mb, err := s.target(dest)
	if err != nil {
		return nil, err
	}
	if len(refs) == 0 {
		return nil, nil
	}
	res, err := s.srv.backend.CopyMessages(s.ctx(), sel.mb.ID, refUIDs(refs), mb.ID)
	if err != nil {
		return nil, s.storeError("copy", err)
	}
	if len(res.SourceUIDs) == 0 {
		return nil, nil
	}
	return copyData(res), nil
}

// Move answers MOVE and UID MOVE (RFC 6851): copy, then expunge from the
// source in the same commit, with COPYUID before the EXPUNGEs.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sel := s.selected()
	if sel.readOnly {
		return readOnlyError()
	}
	_, isSeq := numSet.(imap.SeqSet)
	refs, err := sel.resolve(numSet, isSeq)
	if err != nil {
		return err
	}
	mb, err := s.target(dest)
	if err != nil || len(refs) == 0 {
		return err
	}
	res, err := s.srv.backend.MoveMessages(s.ctx(), sel.mb.ID, refUIDs(refs), mb.ID)
	if err != nil {
		return s.storeError("move", err)
	}
	if len(res.SourceUIDs) == 0 {
		return nil
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	for _, uid := range res.SourceUIDs {
		if seq := sel.remove(uid); seq != 0 {
			if err := w.WriteExpunge(seq); err != nil {
				return err
			}
		}
	}
	return nil
}

// Expunge removes the messages flagged \Deleted (all, or those in uids for
// UID EXPUNGE, RFC 4315 2.1) and reports each (RFC 9051 6.4.3). CLOSE calls
// it with a writer that reports nothing; on a read-only mailbox CLOSE just
// leaves, while EXPUNGE gets NO.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.selected()
	if sel.readOnly {
		if *w == (imapserver.ExpungeWriter{}) {
			return nil // CLOSE
		}
		return readOnlyError()
	}
	candidates := sel.uids
	if uids != nil {
		refs, err := sel.resolve(*uids, false)
		if err != nil {
			return err
		}
		candidates = refUIDs(refs)
	}
	if len(candidates) == 0 {
		return nil
	}
	entries, err := s.srv.backend.EntriesByUID(s.ctx(), sel.mb.ID, candidates)
	if err != nil {
		return s.storeError("expunge", err)
	}
	var del []uint32
	for _, e := range entries {
		if e.Flags&store.FlagDeleted != 0 {
			del = append(del, e.UID)
		}
	}
	if len(del) == 0 {
		return nil
	}
	if _, err := s.srv.backend.Expunge(s.ctx(), sel.mb.ID, del); err != nil {
		return s.storeError("expunge", err)
	}
	for _, uid := range del {
		if seq := sel.remove(uid); seq != 0 {
			if err := w.WriteExpunge(seq); err != nil {
				return err
			}
		}
	}
	return nil
}
