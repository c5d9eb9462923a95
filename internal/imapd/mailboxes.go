package imapd

import (
	"reflect"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postern-mail/postern/internal/store"
)

const delim = store.HierarchyDelim

// Create makes a mailbox (RFC 9051 6.3.4), with a special use when asked
// (RFC 6154 3). A trailing "/" only declares the intent to create children.
func (s *session) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimSuffix(name, string(delim))
	use := ""
	if options != nil && len(options.SpecialUse) > 0 {
		u, ok := store.ValidSpecialUse(string(options.SpecialUse[0]))
		if !ok || len(options.SpecialUse) > 1 {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}
		}
		use = u
	}
	_, err := s.srv.backend.CreateMailbox(s.ctx(), s.user.ID, name, use)
	if err != nil {
		return s.storeError("create", err)
	}
	return nil
}

// Delete removes a mailbox and its messages; its children and its
// subscription stay (RFC 9051 6.3.5).
func (s *session) Delete(name string) error {
	if err := s.srv.backend.DeleteMailbox(s.ctx(), s.user.ID, name); err != nil {
		return s.storeError("delete", err)
	}
	return nil
}

// Rename renames a mailbox and its children (RFC 9051 6.3.6).
func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	if err := s.srv.backend.RenameMailbox(s.ctx(), s.user.ID, oldName, strings.TrimSuffix(newName, string(delim))); err != nil {
		return s.storeError("rename", err)
	}
	return nil
}

// Subscribe adds a name to the subscriptions; it need not exist (RFC 9051 6.3.7).
func (s *session) Subscribe(name string) error {
	if err := s.srv.backend.SetSubscribed(s.ctx(), s.user.ID, name, true); err != nil {
		return s.storeError("subscribe", err)
	}
	return nil
}

// Unsubscribe removes a name from the subscriptions (RFC 9051 6.3.8).
func (s *session) Unsubscribe(name string) error {
	if err := s.srv.backend.SetSubscribed(s.ctx(), s.user.ID, name, false); err != nil {
		return s.storeError("unsubscribe", err)
	}
	return nil
}

// listEntry is one name LIST may return.
type listEntry struct {
	name       string
	mb         *store.Mailbox // nil: an implicit parent or a subscription of a deleted mailbox
	subscribed bool
	children   bool
	subChild   bool // a descendant is subscribed (LIST-EXTENDED RECURSIVEMATCH)
}

// List answers LIST and LSUB with LIST-EXTENDED selection and return
// options (RFC 9051 6.3.9, RFC 5258, RFC 6154, RFC 5819). Mailboxes that
// exist only because they have children are implicit: \Noselect, or
// \NonExistent when selected through their subscription.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051 6.3.9);
		// go-imap drops empty patterns.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim, Mailbox: ""})
	}
	mbs, err := s.srv.backend.Mailboxes(s.ctx(), s.user.ID)
	if err != nil {
		return s.storeError("list", err)
	}
	subs, err := s.srv.backend.Subscriptions(s.ctx(), s.user.ID)
	if err != nil {
		return s.storeError("list", err)
	}
	entries := map[string]*listEntry{}
	var order []string
	get := func(name string) *listEntry {
		e := entries[name]
		if e == nil {
			e = &listEntry{name: name}
			entries[name] = e
			order = append(order, name)
		}
		return e
	}
	for i := range mbs {
		get(mbs[i].Name).mb = &mbs[i]
	}
	for _, name := range subs {
		get(name).subscribed = true
	}
	// Implicit parents and child information.
	for _, name := range slices.Clone(order) {
		e := entries[name]
		for i := len(name) - 1; i > 0; i-- {
			if name[i] != byte(delim) {
				continue
			}
			p := get(name[:i])
			if e.mb != nil {
				p.children = true
			}
			// RFC 5258 3.5: CHILDINFO for subscribed descendants that the
			// patterns do not match themselves.
			if e.subscribed && !matchAny(name, ref, patterns) {
				p.subChild = true
			}
		}
	}
	slices.SortFunc(order, func(a, b string) int {
		if a == "INBOX" {
			return -1
		}
		if b == "INBOX" {
			return 1
		}
		return strings.Compare(a, b)
	})
	lsub := isLSub(w)
	for _, name := range order {
		e := entries[name]
		if !matchAny(name, ref, patterns) {
			continue
		}
		data := &imap.ListData{Mailbox: name, Delim: delim}
		noselect := false
		switch {
		case lsub && !e.subscribed:
			// RFC 3501 6.3.9: with "%", a parent of subscribed mailboxes
			// the pattern does not reach is listed as \Noselect.
			if !e.subChild {
				continue
			}
			noselect = true
		case options.SelectSubscribed && !e.subscribed:
			if !options.SelectRecursiveMatch || !e.subChild {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		case !options.SelectSubscribed && e.mb == nil && !e.children:
			continue // a subscription of a deleted mailbox: only for LSUB or SUBSCRIBED
		}
		if options.SelectSpecialUse && (e.mb == nil || e.mb.SpecialUse == "") {
			continue
		}
		if e.mb == nil || noselect {
			if options.SelectSubscribed && !lsub {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
			} else {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
			}
		}
		if e.children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else if e.mb != nil {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if e.subscribed && (options.SelectSubscribed || options.ReturnSubscribed) && !lsub {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if e.mb != nil && e.mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(e.mb.SpecialUse))
		}
		if options.ReturnStatus != nil && e.mb != nil {
			data.Status = s.statusData(e.mb, options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// isLSub tells LSUB from LIST (SUBSCRIBED): go-imap passes both the same
// options, but they answer differently (RFC 3501 6.3.9 vs RFC 5258 3.1).
func isLSub(w *imapserver.ListWriter) bool {
	f := reflect.ValueOf(w).Elem().FieldByName("lsub")
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
		// INBOX is case-insensitive in patterns too.
		if name == "INBOX" && imapserver.MatchList(name, delim, strings.ToUpper(ref), strings.ToUpper(p)) {
			return true
		}
	}
	return false
}

// Status reports mailbox counters kept by the store (RFC 9051 6.3.11).
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.srv.backend.MailboxByName(s.ctx(), s.user.ID, name)
	if err != nil {
		return nil, s.storeError("status", err)
	}
	return s.statusData(&mb, options), nil
}

func (s *session) statusData(mb *store.Mailbox, options *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: mb.Name}
	if options.NumMessages {
		n := mb.Messages
		d.NumMessages = &n
	}
	if options.UIDNext {
		d.UIDNext = imap.UID(mb.UIDNext)
	}
	if options.UIDValidity {
		d.UIDValidity = mb.UIDValidity
	}
	if options.NumUnseen {
		n := mb.Unseen
		d.NumUnseen = &n
	}
	if options.Size {
		n := mb.Size
		d.Size = &n
	}
	if options.NumRecent {
		n := s.countRecent(mb.ID)
		d.NumRecent = &n
	}
	if options.NumDeleted {
		n := s.countDeleted(mb.ID)
		d.NumDeleted = &n
	}
	if options.AppendLimit {
		n := s.AppendLimit()
		d.AppendLimit = &n
	}
	return d
}

// countDeleted counts messages flagged \Deleted (STATUS DELETED).
func (s *session) countDeleted(mailboxID int64) uint32 {
	uids, err := s.srv.backend.UIDs(s.ctx(), mailboxID)
	if err != nil {
		return 0
	}
	es, err := s.srv.backend.EntriesByUID(s.ctx(), mailboxID, uids)
	if err != nil {
		return 0
	}
	var n uint32
	for _, e := range es {
		if e.Flags&store.FlagDeleted != 0 {
			n++
		}
	}
	return n
}

// countRecent counts the messages no session has claimed as \Recent yet.
func (s *session) countRecent(mailboxID int64) uint32 {
	claimed := s.srv.claimRecent(mailboxID, 0)
	uids, err := s.srv.backend.UIDs(s.ctx(), mailboxID)
	if err != nil {
		return 0
	}
	i, _ := slices.BinarySearch(uids, claimed+1)
	return uint32(len(uids) - i)
}
