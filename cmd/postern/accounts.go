package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

func (a *app) domainCmd() *cobra.Command {
	c := &cobra.Command{Use: "domain", Short: "Manage hosted domains"}
	c.AddCommand(&cobra.Command{
		Use: "add NAME", Short: "Host a domain", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := strings.ToLower(args[0])
			if !validDomain(name) {
				return usageError{fmt.Errorf("%q is not a domain name", args[0])}
			}
			st, cfg, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.AddDomain(context.Background(), name); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "added domain %s\n", name)
			keys, err := dkimKeys(cfg).Ensure(name)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "DKIM keys %s; publish the DNS records that `postern dns-records %s` prints\n", describeKeys(keys), name)
			return nil
		},
	}, &cobra.Command{
		Use: "list", Short: "List hosted domains", Args: cobra.NoArgs,
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			ds, err := st.Domains(context.Background())
			if err != nil {
				return err
			}
			for _, d := range ds {
				fmt.Fprintln(a.stdout, d.Name)
			}
			return nil
		}),
	}, &cobra.Command{
		Use: "remove NAME", Short: "Stop hosting a domain (it must have no users or aliases)", Args: cobra.ExactArgs(1),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			if err := st.RemoveDomain(context.Background(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed domain %s\n", strings.ToLower(args[0]))
			return nil
		}),
	}, a.dkimRotateCmd())
	return c
}

// validDomain accepts a DNS name of letters, digits, hyphens and dots (or
// UTF-8 labels for internationalized names).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, r := range d {
		if !(r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127) {
			return false
		}
	}
	return true
}

func validAddress(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || strings.ContainsAny(addr, " \t\r\n<>()[]\\,;:\"") {
		return false
	}
	return validDomain(strings.ToLower(addr[at+1:]))
}

// readPassword returns the password from stdin (first line) or a new random one.
func (a *app) readPassword(fromStdin bool) (pw string, generated bool, err error) {
	if !fromStdin {
		return auth.RandomPassword(), true, nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", false, errors.New("--password-stdin: no password on standard input")
	}
	pw = strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", false, errors.New("--password-stdin: password must have at least 8 characters")
	}
	return pw, false, nil
}

func (a *app) userCmd() *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Manage mail accounts"}
	var addStdin, passwdStdin bool
	add := &cobra.Command{
		Use: "add ADDR", Short: "Create an account with INBOX, Drafts, Sent, Trash, Junk and Archive (prints a generated password unless --password-stdin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !validAddress(args[0]) {
				return usageError{fmt.Errorf("%q is not an address like user@example.org", args[0])}
			}
			pw, generated, err := a.readPassword(addStdin)
			if err != nil {
				return err
			}
			hash, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			st, _, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			u, err := st.AddUser(context.Background(), args[0], hash)
			if err != nil {
				return err
			}
			if generated {
				fmt.Fprintf(a.stdout, "added user %s with password: %s\n", u.Address, pw)
			} else {
				fmt.Fprintf(a.stdout, "added user %s\n", u.Address)
			}
			return nil
		},
	}
	add.Flags().BoolVar(&addStdin, "password-stdin", false, "read the password from the first line of standard input")
	passwd := &cobra.Command{
		Use: "passwd ADDR", Short: "Set an account's password (prints a generated one unless --password-stdin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, generated, err := a.readPassword(passwdStdin)
			if err != nil {
				return err
			}
			hash, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			st, _, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.SetPassword(context.Background(), args[0], hash); err != nil {
				return err
			}
			if generated {
				fmt.Fprintf(a.stdout, "new password for %s: %s\n", strings.ToLower(args[0]), pw)
			} else {
				fmt.Fprintf(a.stdout, "password changed for %s\n", strings.ToLower(args[0]))
			}
			return nil
		},
	}
	passwd.Flags().BoolVar(&passwdStdin, "password-stdin", false, "read the password from the first line of standard input")
	c.AddCommand(add, passwd, &cobra.Command{
		Use: "list", Short: "List accounts", Args: cobra.NoArgs,
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			us, err := st.Users(context.Background())
			if err != nil {
				return err
			}
			for _, u := range us {
				fmt.Fprintln(a.stdout, u.Address)
			}
			return nil
		}),
	}, &cobra.Command{
		Use: "remove ADDR", Short: "Delete an account and all its mail", Args: cobra.ExactArgs(1),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			if err := st.RemoveUser(context.Background(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed user %s\n", strings.ToLower(args[0]))
			return nil
		}),
	})
	return c
}

func (a *app) aliasCmd() *cobra.Command {
	c := &cobra.Command{Use: "alias", Short: "Manage aliases (one address delivering to local users)"}
	c.AddCommand(&cobra.Command{
		Use: "add ALIAS TARGET...", Short: "Deliver mail for ALIAS to each TARGET (local users, or remote addresses to forward to; @domain makes a catch-all)", Args: cobra.MinimumNArgs(2),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			if err := st.AddAlias(context.Background(), args[0], args[1:]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "added alias %s -> %s\n", strings.ToLower(args[0]), strings.ToLower(strings.Join(args[1:], ", ")))
			return nil
		}),
	}, &cobra.Command{
		Use: "list", Short: "List aliases and their targets", Args: cobra.NoArgs,
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			as, err := st.Aliases(context.Background())
			if err != nil {
				return err
			}
			for _, al := range as {
				fmt.Fprintf(a.stdout, "%s -> %s\n", al.Address, strings.Join(al.Targets, ", "))
			}
			return nil
		}),
	}, &cobra.Command{
		Use: "remove ALIAS", Short: "Delete an alias", Args: cobra.ExactArgs(1),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			if err := st.RemoveAlias(context.Background(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed alias %s\n", strings.ToLower(args[0]))
			return nil
		}),
	})
	return c
}
