package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/postern-mail/postern/internal/config"
	"github.com/postern-mail/postern/internal/msgauth"
	"github.com/postern-mail/postern/internal/server"
)

// dkimKeys is the DKIM key store of the configured data directory.
func dkimKeys(cfg *config.Config) *msgauth.KeyStore {
	return msgauth.NewKeyStore(server.DKIMDir(cfg.DataDir))
}

// describeKeys lists keys as "p202611a (ed25519-sha256), p202611b (rsa-sha256)".
func describeKeys(keys []msgauth.Key) string {
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s (%s-sha256)", k.Selector, k.Algorithm()))
	}
	return strings.Join(parts, ", ")
}

func (a *app) dkimRotateCmd() *cobra.Command {
	var retire bool
	c := &cobra.Command{
		Use:   "dkim-rotate NAME",
		Short: "Make new DKIM keys sign the domain's mail; the old keys stay published until --retire",
		Long: "dkim-rotate creates a new pair of DKIM keys (ed25519-sha256 and rsa-sha256) for a hosted\n" +
			"domain and signs its mail with them from now on. Publish the new records first\n" +
			"(postern dns-records NAME); the old keys stay listed there so that mail already\n" +
			"signed with them still verifies. A few days later, `dkim-rotate NAME --retire`\n" +
			"deletes the old keys; then remove their records from DNS.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := strings.ToLower(strings.TrimSuffix(args[0], "."))
			st, cfg, err := a.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			ok, err := st.HasDomain(context.Background(), name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s is not a hosted domain", name)
			}
			ks := dkimKeys(cfg)
			if retire {
				gone, err := ks.Retire(name)
				if err != nil {
					return err
				}
				if len(gone) == 0 {
					fmt.Fprintf(a.stdout, "%s has no retired DKIM keys\n", name)
					return nil
				}
				fmt.Fprintf(a.stdout, "deleted DKIM keys %s of %s; remove their TXT records from DNS\n", strings.Join(gone, ", "), name)
				return nil
			}
			keys, err := ks.Rotate(name)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s now signs with DKIM keys %s; the previous keys stay published until `postern domain dkim-rotate %s --retire`\n",
				name, describeKeys(keys), name)
			return nil
		},
	}
	c.Flags().BoolVar(&retire, "retire", false, "delete the keys that no longer sign (after their DNS records are gone)")
	return c
}
