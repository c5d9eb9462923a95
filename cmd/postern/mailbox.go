package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/postern-mail/postern/internal/mbox"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

func (a *app) mailboxCmd() *cobra.Command {
	c := &cobra.Command{Use: "mailbox", Short: "Work with users' mailboxes"}
	var name string
	export := &cobra.Command{
		Use: "export ADDR", Short: "Write a mailbox to standard output as mboxrd (for backups)", Args: cobra.ExactArgs(1),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			ctx := context.Background()
			u, err := st.UserByAddress(ctx, args[0])
			if err != nil {
				return err
			}
			mb, err := st.MailboxByName(ctx, u.ID, name)
			if err != nil {
				return err
			}
			entries, err := st.Entries(ctx, mb.ID)
			if err != nil {
				return err
			}
			w := mbox.NewWriter(a.stdout)
			for _, e := range entries {
				r, err := st.OpenEntry(ctx, mb.ID, e.UID)
				if err != nil {
					return fmt.Errorf("message %d: %w", e.UID, err)
				}
				err = w.Write(e.From, e.InternalDate, r)
				r.Close()
				if err != nil {
					return err
				}
			}
			return w.Flush()
		}),
	}
	export.Flags().StringVar(&name, "mailbox", "INBOX", "mailbox name")
	c.AddCommand(export, &cobra.Command{
		Use: "list ADDR", Short: "List a user's mailboxes with message counts", Args: cobra.ExactArgs(1),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			ctx := context.Background()
			u, err := st.UserByAddress(ctx, args[0])
			if err != nil {
				return err
			}
			mbs, err := st.Mailboxes(ctx, u.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%-12s %8s %8s %12s\n", "MAILBOX", "MESSAGES", "UNSEEN", "BYTES")
			for _, m := range mbs {
				fmt.Fprintf(a.stdout, "%-12s %8d %8d %12d\n", m.Name, m.Messages, m.Unseen, m.Size)
			}
			return nil
		}),
	})
	return c
}

func (a *app) traceCmd() *cobra.Command {
	return &cobra.Command{
		Use: "trace ID|MESSAGE-ID", Short: "Show a message's journey by queue ID or Message-ID", Args: cobra.ExactArgs(1),
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			evs, err := st.Events(context.Background(), args[0])
			if err != nil {
				return err
			}
			for _, e := range evs {
				fmt.Fprintf(a.stdout, "%s %s %-10s %s\n", e.Time.UTC().Format(time.RFC3339Nano), e.QueueID, e.Kind, e.Detail)
			}
			return nil
		}),
	}
}
