package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/postern-mail/postern/internal/queue"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// queueEntryJSON is the stable JSON form of a queue entry (postern queue
// list --json and show --json): fields may be added, never renamed.
type queueEntryJSON struct {
	ID          int64  `json:"id"`
	QueueID     string `json:"queue_id"`
	From        string `json:"from"`
	Recipient   string `json:"recipient"`
	Domain      string `json:"domain"`
	Size        int64  `json:"size"`
	Held        bool   `json:"held"`
	Attempts    int    `json:"attempts"`
	Created     string `json:"created"`
	NextAttempt string `json:"next_attempt"`
	LastError   string `json:"last_error"`
	DelayWarned bool   `json:"delay_warned"`
}

func entryJSON(e store.QueueEntry) queueEntryJSON {
	return queueEntryJSON{ID: e.ID, QueueID: e.QueueID, From: e.From, Recipient: e.Recipient, Domain: e.Domain, Size: e.Size,
		Held: e.Held, Attempts: e.Attempts, Created: e.Created.UTC().Format(time.RFC3339), NextAttempt: e.NextAttempt.UTC().Format(time.RFC3339),
		LastError: e.LastError, DelayWarned: e.DelayWarned}
}

func parseIDs(args []string) ([]int64, error) {
	var ids []int64
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return nil, usageError{fmt.Errorf("%q is not a queue entry ID (see postern queue list)", a)}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (a *app) queueCmd() *cobra.Command {
	c := &cobra.Command{Use: "queue", Short: "Inspect and steer the outbound queue (one entry per remote recipient)"}
	var listJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List queued recipients", Args: cobra.NoArgs,
		RunE: a.withStore(func(st *sqlite.Store, args []string) error {
			es, err := st.QueueEntries(context.Background())
			if err != nil {
				return err
			}
			if listJSON {
				out := struct {
					Entries []queueEntryJSON `json:"entries"`
				}{Entries: []queueEntryJSON{}}
				for _, e := range es {
					out.Entries = append(out.Entries, entryJSON(e))
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(es) == 0 {
				fmt.Fprintln(a.stdout, "queue is empty")
				return nil
			}
			fmt.Fprintf(a.stdout, "%-6s %-24s %-8s %-4s %-20s %s\n", "ID", "QUEUE-ID", "SIZE", "TRY", "NEXT", "FROM -> TO")
			for _, e := range es {
				next := e.NextAttempt.UTC().Format("2006-01-02 15:04:05")
				if e.Held {
					next = "held"
				}
				fmt.Fprintf(a.stdout, "%-6d %-24s %-8d %-4d %-20s <%s> -> <%s>\n", e.ID, e.QueueID, e.Size, e.Attempts, next, e.From, e.Recipient)
				if e.LastError != "" {
					fmt.Fprintf(a.stdout, "%6s %s\n", "", e.LastError)
				}
			}
			return nil
		}),
	}
	list.Flags().BoolVar(&listJSON, "json", false, "one JSON document: {\"entries\": [...]}")
	show := &cobra.Command{
		Use: "show ID", Short: "Show one queue entry and its message's journey", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			st, _, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			e, err := st.QueueEntry(context.Background(), ids[0])
			if err != nil {
				return err
			}
			j := entryJSON(e)
			fmt.Fprintf(a.stdout, "id:           %d\nqueue id:     %s\nfrom:         <%s>\nto:           <%s>\nsize:         %d\nheld:         %v\nattempts:     %d\ncreated:      %s\nnext attempt: %s\nlast error:   %s\n",
				j.ID, j.QueueID, j.From, j.Recipient, j.Size, j.Held, j.Attempts, j.Created, j.NextAttempt, j.LastError)
			if evs, err := st.Events(context.Background(), e.QueueID); err == nil {
				fmt.Fprintln(a.stdout, "journey:")
				for _, ev := range evs {
					fmt.Fprintf(a.stdout, "  %s %-9s %s\n", ev.Time.UTC().Format(time.RFC3339), ev.Kind, ev.Detail)
				}
			}
			return nil
		},
	}
	var retryAll bool
	retry := &cobra.Command{
		Use: "retry ID...|--all", Short: "Attempt entries now (a running server picks them up within seconds)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if retryAll == (len(args) > 0) {
				return usageError{fmt.Errorf("give entry IDs or --all")}
			}
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			st, _, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.RetryEntries(context.Background(), ids)
			if err != nil {
				return err
			}
			if n == 0 && len(ids) > 0 {
				return fmt.Errorf("no such queue entry: %v", args)
			}
			fmt.Fprintf(a.stdout, "%d entries due now\n", n)
			return nil
		},
	}
	retry.Flags().BoolVar(&retryAll, "all", false, "every entry not held")
	var silent bool
	del := &cobra.Command{
		Use: "delete ID...", Short: "Remove entries; the sender gets a failure notice unless --silent", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			st, cfg, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			q := queue.New(queue.Config{Hostname: cfg.Hostname, MaxLifetime: cfg.Queue.MaxLifetime.Duration,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, st, nil)
			n, err := q.Delete(context.Background(), ids, silent)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted %d entries\n", n)
			return nil
		},
	}
	del.Flags().BoolVar(&silent, "silent", false, "send no failure notice to the sender")
	holdCmd := func(use, short string, hold bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID...", Short: short, Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ids, err := parseIDs(args)
				if err != nil {
					return err
				}
				st, _, err := a.openStore()
				if err != nil {
					return err
				}
				defer st.Close()
				n, err := st.HoldEntries(context.Background(), ids, hold)
				if err != nil {
					return err
				}
				if n == 0 {
					return fmt.Errorf("no such queue entry: %v", args)
				}
				fmt.Fprintf(a.stdout, "%s %d entries\n", map[bool]string{true: "held", false: "released"}[hold], n)
				return nil
			},
		}
	}
	c.AddCommand(list, show, retry, del, holdCmd("hold", "Keep entries from being attempted", true), holdCmd("release", "Let held entries be attempted again", false))
	return c
}
