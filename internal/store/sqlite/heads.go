package sqlite

import (
	"context"
	"io"
	"slices"
)

// EntryHeads calls fn, in UID order, for each entry among uids (sorted
// ascending) with the start of the message as read: its per-recipient
// prefix and the first max bytes of the stored message, enough for the
// header fields of all but unusual messages. One query per run of up to
// 1,000 UIDs rather than one per message: SEARCH on header fields reads
// every message of a mailbox.
func (s *Store) EntryHeads(ctx context.Context, mailboxID int64, uids []uint32, max int, fn func(uid uint32, head []byte) error) error {
	const chunk = 1000
	for len(uids) > 0 {
		part := uids[:min(chunk, len(uids))]
		uids = uids[len(part):]
		if err := s.entryHeads(ctx, mailboxID, part, max, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) entryHeads(ctx context.Context, mailboxID int64, uids []uint32, max int, fn func(uid uint32, head []byte) error) error {
	rows, err := s.rquery(ctx, `SELECT e.uid, e.prefix, m.inline, m.qid, substr(c.data, 1, ?) FROM entries e JOIN messages m ON m.id = e.message_id
		LEFT JOIN contents c ON c.message_id = m.id WHERE e.mailbox_id = ? AND e.uid BETWEEN ? AND ? ORDER BY e.uid`,
		max, mailboxID, uids[0], uids[len(uids)-1])
	if err != nil {
		return err
	}
	defer rows.Close()
	var prefix, data []byte
	for rows.Next() {
		var uid uint32
		var inline bool
		var qid string
		if err := rows.Scan(&uid, &prefix, &inline, &qid, &data); err != nil {
			return err
		}
		if _, ok := slices.BinarySearch(uids, uid); !ok {
			continue
		}
		head := append(prefix, data...)
		if !inline {
			f, err := s.blobs.Open(qid)
			if err != nil {
				return err
			}
			buf := make([]byte, max)
			n, err := io.ReadFull(f, buf)
			f.Close()
			if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
				return err
			}
			head = append(prefix, buf[:n]...)
		}
		if err := fn(uid, head); err != nil {
			return err
		}
	}
	return rows.Err()
}
