package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/postern-mail/postern/internal/store"
)

// splitAddress returns the lower-cased address and its domain, without
// surrounding space or the root's trailing dot. All trailing dots and
// spaces go at once, so that a returned address splits to itself
// ("a@b.." once gave "a@b.", then "a@b").
func splitAddress(address string) (addr, domain string, err error) {
	a := strings.TrimRightFunc(strings.ToLower(strings.TrimSpace(address)), func(r rune) bool {
		return r == '.' || unicode.IsSpace(r)
	})
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", "", fmt.Errorf("%q is not an address like user@example.org", address)
	}
	return a, a[at+1:], nil
}

// AddDomain adds a hosted domain.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	return s.exec(func(w *wtx) error {
		_, err := w.Exec(`INSERT INTO domains(name, created) VALUES (?, ?)`, name, unixMilli(time.Now()))
		if isUnique(err) {
			return fmt.Errorf("domain %s: %w", name, store.ErrExists)
		}
		return err
	})
}

// RemoveDomain removes a domain that has no users or aliases left.
func (s *Store) RemoveDomain(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	return s.exec(func(w *wtx) error {
		var users, aliases int
		if err := w.QueryRow(`SELECT (SELECT count(*) FROM users WHERE domain = ?), (SELECT count(*) FROM aliases WHERE domain = ?)`, name, name).Scan(&users, &aliases); err != nil {
			return err
		}
		if users > 0 || aliases > 0 {
			return fmt.Errorf("domain %s has %d users and %d alias targets; remove them first: %w", name, users, aliases, store.ErrInUse)
		}
		res, err := w.Exec(`DELETE FROM domains WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
		}
		return nil
	})
}

// Domains lists the hosted domains by name.
func (s *Store) Domains(ctx context.Context) ([]store.Domain, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, created FROM domains ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Domain
	for rows.Next() {
		var d store.Domain
		var created int64
		if err := rows.Scan(&d.Name, &created); err != nil {
			return nil, err
		}
		d.Created = fromMilli(created)
		out = append(out, d)
	}
	return out, rows.Err()
}

// HasDomain reports whether the domain is hosted here (case-insensitive).
func (s *Store) HasDomain(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.rqueryRow(ctx, `SELECT count(*) FROM domains WHERE name = ?`, strings.ToLower(strings.TrimSuffix(name, "."))).Scan(&n)
	return n > 0, err
}

// AddUser creates a user and its default mailboxes in one transaction.
func (s *Store) AddUser(ctx context.Context, address, passwordHash string) (store.User, error) {
	addr, domain, err := splitAddress(address)
	if err != nil {
		return store.User{}, err
	}
	u := store.User{Address: addr, PasswordHash: passwordHash, Created: time.Now()}
	err = s.exec(func(w *wtx) error {
		var n int
		if err := w.QueryRow(`SELECT count(*) FROM domains WHERE name = ?`, domain).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("domain %s: %w (add it first)", domain, store.ErrNotFound)
		}
		if err := w.QueryRow(`SELECT count(*) FROM aliases WHERE address = ?`, addr).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s is an alias: %w", addr, store.ErrExists)
		}
		res, err := w.Exec(`INSERT INTO users(address, domain, password, created) VALUES (?, ?, ?, ?)`, addr, domain, passwordHash, unixMilli(u.Created))
		if isUnique(err) {
			return fmt.Errorf("user %s: %w", addr, store.ErrExists)
		}
		if err != nil {
			return err
		}
		u.ID, err = res.LastInsertId()
		if err != nil {
			return err
		}
		for _, mb := range store.DefaultMailboxes {
			if err := createMailbox(w, u.ID, mb.Name, mb.SpecialUse); err != nil {
				return err
			}
			if _, err := w.Exec(`INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)`, u.ID, mb.Name); err != nil {
				return err
			}
		}
		return nil
	})
	return u, err
}

// createMailbox inserts a mailbox with a fresh UIDVALIDITY.
func createMailbox(w *wtx, userID int64, name, specialUse string) error {
	uv, err := nextUIDValidity(w)
	if err != nil {
		return err
	}
	// Mailbox IDs are never reused (SQLite would hand a deleted mailbox's
	// ID to the next one): sessions and the change broadcaster know
	// mailboxes by ID.
	var id int64
	if err := w.QueryRow(`SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_mailbox_id'), 0),
		coalesce((SELECT max(id) FROM mailboxes), 0)) + 1`).Scan(&id); err != nil {
		return err
	}
	if _, err := w.Exec(`INSERT INTO meta(key, value) VALUES ('last_mailbox_id', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, fmt.Sprint(id)); err != nil {
		return err
	}
	_, err = w.Exec(`INSERT INTO mailboxes(id, user_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?, ?)`, id, userID, name, specialUse, uv)
	if isUnique(err) {
		return fmt.Errorf("mailbox %s: %w", name, store.ErrExists)
	}
	return err
}

// nextUIDValidity returns a UIDVALIDITY never handed out before in this
// store: it starts at the current Unix time and only grows.
func nextUIDValidity(w *wtx) (uint32, error) {
	var cur sql.NullInt64
	if err := w.QueryRow(`SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'uidvalidity'`).Scan(&cur); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	next := time.Now().Unix()
	if cur.Valid && cur.Int64+1 > next {
		next = cur.Int64 + 1
	}
	if next > 0xffffffff {
		return 0, errors.New("store: UIDVALIDITY space exhausted")
	}
	if _, err := w.Exec(`INSERT INTO meta(key, value) VALUES ('uidvalidity', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, fmt.Sprint(next)); err != nil {
		return 0, err
	}
	return uint32(next), nil
}

// RemoveUser deletes a user, its mailboxes and messages, and drops it from aliases.
func (s *Store) RemoveUser(ctx context.Context, address string) error {
	addr, _, err := splitAddress(address)
	if err != nil {
		return err
	}
	var orphans []string
	return s.write(&writeReq{fn: func(w *wtx) error {
		orphans = orphans[:0]
		var id int64
		if err := w.QueryRow(`SELECT id FROM users WHERE address = ?`, addr).Scan(&id); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", addr, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		if _, err := w.Exec(`UPDATE messages SET refs = refs - (SELECT count(*) FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.user_id = ? AND e.message_id = messages.id)
			WHERE id IN (SELECT e.message_id FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.user_id = ?)`, id, id); err != nil {
			return err
		}
		if _, err := w.Exec(`DELETE FROM keywords WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE user_id = ?)`, id); err != nil {
			return err
		}
		if _, err := w.Exec(`DELETE FROM users WHERE id = ?`, id); err != nil {
			return err
		}
		if _, err := w.Exec(`DELETE FROM aliases WHERE target = ?`, addr); err != nil {
			return err
		}
		var err error
		orphans, err = collectOrphans(w)
		return err
	}, after: func() { s.removeBlobs(orphans) }})
}

// SetPassword replaces a user's password hash.
func (s *Store) SetPassword(ctx context.Context, address, passwordHash string) error {
	addr, _, err := splitAddress(address)
	if err != nil {
		return err
	}
	return s.exec(func(w *wtx) error {
		res, err := w.Exec(`UPDATE users SET password = ? WHERE address = ?`, passwordHash, addr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %s: %w", addr, store.ErrNotFound)
		}
		return nil
	})
}

// UserByAddress finds a user by address (case-insensitive).
func (s *Store) UserByAddress(ctx context.Context, address string) (store.User, error) {
	var u store.User
	var created int64
	err := s.rqueryRow(ctx, `SELECT id, address, password, created FROM users WHERE address = ?`, strings.ToLower(strings.TrimSpace(address))).
		Scan(&u.ID, &u.Address, &u.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", address, store.ErrNotFound)
	}
	u.Created = fromMilli(created)
	return u, err
}

// Users lists all users by address.
func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, address, password, created FROM users ORDER BY domain, address`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		var created int64
		if err := rows.Scan(&u.ID, &u.Address, &u.PasswordHash, &created); err != nil {
			return nil, err
		}
		u.Created = fromMilli(created)
		out = append(out, u)
	}
	return out, rows.Err()
}

// AddAlias creates an alias (or adds targets to it). Targets must be local
// users; an address of the form "@domain" is a catch-all for that domain.
func (s *Store) AddAlias(ctx context.Context, address string, targets []string) error {
	a := strings.ToLower(strings.TrimSpace(address))
	at := strings.LastIndexByte(a, '@')
	if at < 0 || at == len(a)-1 {
		return fmt.Errorf("%q is not an alias address like name@example.org or @example.org", address)
	}
	domain := a[at+1:]
	if len(targets) == 0 {
		return errors.New("an alias needs at least one target")
	}
	return s.exec(func(w *wtx) error {
		var n int
		if err := w.QueryRow(`SELECT count(*) FROM domains WHERE name = ?`, domain).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("domain %s: %w (add it first)", domain, store.ErrNotFound)
		}
		if err := w.QueryRow(`SELECT count(*) FROM users WHERE address = ?`, a).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s is a user: %w", a, store.ErrExists)
		}
		for _, t := range targets {
			t, tdomain, err := splitAddress(t)
			if err != nil {
				return err
			}
			var hosted int
			if err := w.QueryRow(`SELECT count(*) FROM domains WHERE name = ?`, tdomain).Scan(&hosted); err != nil {
				return err
			}
			if err := w.QueryRow(`SELECT count(*) FROM users WHERE address = ?`, t).Scan(&n); err != nil {
				return err
			}
			// A target in a hosted domain must be a user; any other is
			// forwarded through the outbound queue.
			if hosted > 0 && n == 0 {
				return fmt.Errorf("target %s is not a user of hosted domain %s: %w", t, tdomain, store.ErrNotFound)
			}
			if _, err := w.Exec(`INSERT OR IGNORE INTO aliases(address, target, domain) VALUES (?, ?, ?)`, a, t, domain); err != nil {
				return err
			}
		}
		return nil
	})
}

// RemoveAlias deletes an alias and all its targets.
func (s *Store) RemoveAlias(ctx context.Context, address string) error {
	a := strings.ToLower(strings.TrimSpace(address))
	return s.exec(func(w *wtx) error {
		res, err := w.Exec(`DELETE FROM aliases WHERE address = ?`, a)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("alias %s: %w", a, store.ErrNotFound)
		}
		return nil
	})
}

// Aliases lists all aliases with their targets.
func (s *Store) Aliases(ctx context.Context) ([]store.Alias, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT address, target FROM aliases ORDER BY domain, address, target`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Alias
	for rows.Next() {
		var a, t string
		if err := rows.Scan(&a, &t); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Address != a {
			out = append(out, store.Alias{Address: a})
		}
		out[len(out)-1].Targets = append(out[len(out)-1].Targets, t)
	}
	return out, rows.Err()
}

// candidates are the addresses tried for addr, in order: itself, the
// user of user+detail, then the domain's catch-all alias (@domain).
func candidates(addr, domain string) []string {
	out := []string{addr}
	local := addr[:len(addr)-len(domain)-1]
	if i := strings.IndexByte(local, '+'); i > 0 {
		out = append(out, local[:i]+"@"+domain)
	}
	return append(out, "@"+domain)
}

// ResolveLocal maps an address in a local domain to the users it reaches:
// the user itself, else an alias's targets, else user+detail's user, else
// the domain's catch-all alias (@domain). Duplicates are removed.
func (s *Store) ResolveLocal(ctx context.Context, address string) ([]store.User, error) {
	addr, domain, err := splitAddress(address)
	if err != nil {
		return nil, err
	}
	local := addr[:len(addr)-len(domain)-1]
	for _, c := range candidates(addr, domain) {
		if !strings.HasPrefix(c, "@") {
			if u, err := s.UserByAddress(ctx, c); err == nil {
				return []store.User{u}, nil
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		users, err := s.aliasUsers(ctx, c)
		if err != nil {
			return nil, err
		}
		if len(users) > 0 {
			return users, nil
		}
	}
	if local == "postmaster" {
		// RFC 5321 4.5.1: every domain accepts postmaster. Without a user
		// or alias of that name, it reaches the domain's first account.
		var u store.User
		var created int64
		err := s.rqueryRow(ctx, `SELECT id, address, password, created FROM users WHERE domain = ? ORDER BY id LIMIT 1`, domain).
			Scan(&u.ID, &u.Address, &u.PasswordHash, &created)
		if err == nil {
			u.Created = fromMilli(created)
			return []store.User{u}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: %w", addr, store.ErrNotFound)
}

// ResolveRecipient maps a local address to the users it reaches and the
// remote addresses it forwards to (aliases with targets in other domains),
// in the order ResolveLocal tries; store.ErrNotFound if it reaches nobody.
func (s *Store) ResolveRecipient(ctx context.Context, address string) ([]store.User, []string, error) {
	addr, domain, err := splitAddress(address)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range candidates(addr, domain) {
		if !strings.HasPrefix(c, "@") {
			if u, err := s.UserByAddress(ctx, c); err == nil {
				// A user: what ResolveLocal would answer, as every
				// candidate before it reached nobody.
				return []store.User{u}, nil, nil
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, nil, err
			}
		}
		fwd, err := s.forwardTargets(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		if len(fwd) > 0 {
			users, err := s.aliasUsers(ctx, c)
			return users, fwd, err
		}
		if users, err := s.aliasUsers(ctx, c); err != nil || len(users) > 0 {
			return users, nil, err
		}
	}
	users, err := s.ResolveLocal(ctx, address)
	return users, nil, err
}

// forwardTargets returns an alias's targets that are not local users.
func (s *Store) forwardTargets(ctx context.Context, alias string) ([]string, error) {
	rows, err := s.rquery(ctx, `SELECT a.target FROM aliases a LEFT JOIN users u ON u.address = a.target WHERE a.address = ? AND u.id IS NULL ORDER BY a.target`, alias)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *Store) aliasUsers(ctx context.Context, alias string) ([]store.User, error) {
	rows, err := s.rquery(ctx, `SELECT u.id, u.address, u.password, u.created FROM aliases a JOIN users u ON u.address = a.target WHERE a.address = ? ORDER BY u.id`, alias)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		var created int64
		if err := rows.Scan(&u.ID, &u.Address, &u.PasswordHash, &created); err != nil {
			return nil, err
		}
		u.Created = fromMilli(created)
		out = append(out, u)
	}
	return out, rows.Err()
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}
