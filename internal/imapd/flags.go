package imapd

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/store"
)

// parseFlags splits IMAP flags into system flag bits and keywords. \Recent
// cannot be set by clients and is ignored (RFC 3501 2.3.2); an unknown
// system flag is refused.
func parseFlags(flags []imap.Flag) (store.Flags, []string, error) {
	var sys store.Flags
	var kws []string
	for _, f := range flags {
		switch strings.ToLower(string(f)) {
		case `\seen`:
			sys |= store.FlagSeen
		case `\answered`:
			sys |= store.FlagAnswered
		case `\flagged`:
			sys |= store.FlagFlagged
		case `\deleted`:
			sys |= store.FlagDeleted
		case `\draft`:
			sys |= store.FlagDraft
		case `\recent`:
		default:
			if strings.HasPrefix(string(f), `\`) {
				return 0, nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown system flag " + string(f)}
			}
			kws = append(kws, string(f))
		}
	}
	return sys, kws, nil
}

// Store answers STORE and UID STORE (RFC 9051 6.4.6): FLAGS, +FLAGS,
// -FLAGS, each optionally .SILENT, with system flags and keywords.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sel := s.selected()
	if sel.readOnly {
		return readOnlyError()
	}
	sys, kws, err := parseFlags(flags.Flags)
	if err != nil {
		return err
	}
	_, isSeq := numSet.(imap.SeqSet)
	refs, err := sel.resolve(numSet, isSeq)
	if err != nil || len(refs) == 0 {
		return err
	}
	op := store.FlagsSet
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	}
	uids := refUIDs(refs)
	if _, err := s.srv.backend.UpdateFlags(s.ctx(), sel.mb.ID, uids, store.FlagUpdate{Op: op, Flags: sys, Keywords: kws, Origin: s}); err != nil {
		return s.storeError("store", err)
	}
	if flags.Silent {
		return nil
	}
	// The new flags of every message named, changed or not (RFC 9051 6.4.6);
	// UID STORE includes the UID (6.4.9).
	entries, err := s.srv.backend.EntriesByUID(s.ctx(), sel.mb.ID, uids)
	if err != nil {
		return s.storeError("store", err)
	}
	if err := sel.preannounce(entries); err != nil {
		return err
	}
	byUID := newEntriesByUID(entries)
	for _, r := range refs {
		e := byUID.get(r.uid)
		if e == nil {
			continue
		}
		rw := w.CreateMessage(r.seq)
		if !isSeq {
			rw.WriteUID(imap.UID(r.uid))
		}
		rw.WriteFlags(sel.imapFlags(r.uid, e.Flags, e.Keywords))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}
