package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
)

type forgetOptions struct {
	config, job string
}

func newForgetCmd(g *globals) *cobra.Command {
	var o forgetOptions
	cmd := &cobra.Command{
		Use:   "forget -c FILE --job NAME KEY...",
		Short: "Clear keys that failed permanently (or are queued) from a job's journal",
		Long: `forget removes each KEY's permanent failure (a change the source refused for
good, such as an event naming an invalid key, listed by status as "failed, not
retried") and its queued change, if any, from the job's journal: nothing
retries or reports it any more. It touches no store. A later event or scan
that finds the key again queues it anew. It needs the journal to itself:
stop voyageur watch first.`,
		Example: `  voyageur forget -c /etc/voyageur/voyageur.yaml --job ledgers 'in/../secret.txt'
  voyageur status -c voyageur.yaml --json | jq -r '.jobs[0].failed[].key' | xargs voyageur forget -c voyageur.yaml --job ledgers`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, keys []string) error {
			return runForget(o, g, keys, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	cmd.Flags().StringVar(&o.job, "job", "", "the job whose keys to forget (required)")
	for _, name := range []string{"config", "job"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runForget(o forgetOptions, g *globals, keys []string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfigWithoutSecrets(o.config, g.logger(stderr))
	if err != nil {
		return err
	}
	if _, err := selectJobs(cfg, o.job); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Journal); errors.Is(err, fs.ErrNotExist) {
		return configErrorf("no journal at %s: nothing to forget", cfg.Journal)
	}
	j, err := openJournal(cfg)
	if err != nil {
		return err
	}
	defer j.Close()
	unknown, err := j.Section(o.job).Forget(keys)
	if err != nil {
		return err
	}
	missing := map[string]bool{}
	for _, k := range unknown {
		missing[k] = true
		fmt.Fprintf(stderr, "voyageur: %s: nothing recorded for this key in job %s\n", termSafe(k), o.job)
	}
	for _, k := range keys {
		if !missing[k] {
			fmt.Fprintf(stdout, "forgot %s\n", termSafe(k))
		}
	}
	if len(unknown) > 0 {
		return errObjectsFailed
	}
	return nil
}
