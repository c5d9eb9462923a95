package imapd

import (
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/store"
)

// Fetch answers FETCH and UID FETCH (RFC 9051 6.4.5). Fetching a body
// section without .PEEK sets \Seen (unless the mailbox is read-only), and
// the new flags are returned with the data.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel := s.selected()
	_, isSeq := numSet.(imap.SeqSet)
	refs, err := sel.resolve(numSet, isSeq)
	if err != nil || len(refs) == 0 {
		return err
	}
	entries, err := s.srv.backend.EntriesByUID(s.ctx(), sel.mb.ID, refUIDs(refs))
	if err != nil {
		return s.storeError("fetch", err)
	}
	byUID := newEntriesByUID(entries)

	seenNow := map[uint32]bool{}
	if !sel.readOnly && setsSeen(options) {
		var unseen []uint32
		for _, e := range entries {
			if e.Flags&store.FlagSeen == 0 {
				unseen = append(unseen, e.UID)
			}
		}
		if len(unseen) > 0 {
			res, err := s.srv.backend.UpdateFlags(s.ctx(), sel.mb.ID, unseen, store.FlagUpdate{Op: store.FlagsAdd, Flags: store.FlagSeen, Origin: s})
			if err != nil {
				return s.storeError("fetch: setting \\Seen", err)
			}
			for _, r := range res {
				if e := byUID.get(r.UID); e != nil {
					e.Flags, e.Keywords = r.Flags, r.Keywords
					seenNow[r.UID] = true
				}
			}
		}
	}

	if err := sel.preannounce(entries); err != nil {
		return err
	}
	needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, r := range refs {
		e := byUID.get(r.uid)
		if e == nil {
			continue // expunged by another session; its EXPUNGE comes later
		}
		var raw []byte
		if needBody {
			if raw, err = s.readMessage(sel.mb.ID, r.uid); errors.Is(err, store.ErrNotFound) {
				continue // expunged by another session since; its EXPUNGE comes later
			} else if err != nil {
				return s.storeError("fetch: reading message", err)
			}
		}
		// BINARY may fail (unknown encoding): decode before answering.
		binaries := make([][]byte, len(options.BinarySection))
		for i, bs := range options.BinarySection {
			b, err := binaryContent(raw, bs.Part)
			if err != nil {
				return err
			}
			binaries[i] = partial(b, bs.Partial)
		}
		sizes := make([]uint32, len(options.BinarySectionSize))
		for i, bss := range options.BinarySectionSize {
			b, err := binaryContent(raw, bss.Part)
			if err != nil {
				return err
			}
			sizes[i] = uint32(len(b))
		}
		if err := s.writeFetch(sel, w.CreateMessage(r.seq), options, e, raw, seenNow[r.uid], binaries, sizes); err != nil {
			return err
		}
	}
	return nil
}

func setsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

func (s *session) readMessage(mailboxID int64, uid uint32) ([]byte, error) {
	rc, err := s.srv.backend.OpenEntry(s.ctx(), mailboxID, uid)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// writeFetch writes one message's FETCH response; it always closes rw.
func (s *session) writeFetch(sel *selected, rw *imapserver.FetchResponseWriter, options *imap.FetchOptions, e *store.Entry, raw []byte, flagsChanged bool, binaries [][]byte, sizes []uint32) error {
	if options.UID {
		rw.WriteUID(imap.UID(e.UID))
	}
	if options.Flags || flagsChanged {
		rw.WriteFlags(sel.imapFlags(e.UID, e.Flags, e.Keywords))
	}
	if options.InternalDate {
		rw.WriteInternalDate(e.InternalDate)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(e.Size)
	}
	if options.Envelope {
		rw.WriteEnvelope(envelopeOf(raw))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(splitMessage(raw).bodyStructure())
	}
	for _, bs := range options.BodySection {
		buf := imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			rw.Close()
			return err
		}
	}
	for i, bs := range options.BinarySection {
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(binaries[i]))), binaries[i]); err != nil {
			rw.Close()
			return err
		}
	}
	for i, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, sizes[i])
	}
	return rw.Close()
}

func writeLiteral(wc io.WriteCloser, buf []byte) error {
	_, werr := wc.Write(buf)
	cerr := wc.Close()
	if werr != nil {
		return werr
	}
	return cerr
}
