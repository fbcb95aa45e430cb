package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/crypto"
)

type keygenOptions struct {
	pq     bool
	output string
}

func newKeygenCmd() *cobra.Command {
	var o keygenOptions
	cmd := &cobra.Command{
		Use:   "keygen [--pq] [-o FILE]",
		Short: "Generate an age identity (private key) and print its recipient (public key)",
		Long: `keygen writes a new age identity, in age's file format, to FILE (created 0600,
never overwritten) or to stdout, and prints its recipient on stderr. Put the
recipient in the job's encryption.recipients; keep the identity OFFLINE: it is
needed only to restore and to verify replicas, never to replicate.

The identity works with the standard age tools too:
  age -d -i identity.txt OBJECT | zstd -d > original`,
		Example: `  voyageur keygen -o /media/offline/voyageur-identity.txt
  voyageur keygen --pq -o identity-pq.txt     # hybrid post-quantum (ML-KEM-768 + X25519)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeygen(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&o.pq, "pq", false, "generate a hybrid post-quantum identity (age1pq1… recipient)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the identity to this new file instead of stdout")
	return cmd
}

// writeNewFile creates path (0600) holding data, what it is named in
// errors. It never replaces a file, and leaves none behind when it fails.
func writeNewFile(path string, data []byte, what string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return configErrorf("-o %s: the file exists; an existing %s is never overwritten", path, what)
	}
	if err != nil {
		return configErrorf("create %s file: %w", what, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s file %s: %w", what, path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s file %s: %w", what, path, err)
	}
	return nil
}

func runKeygen(o keygenOptions, stdout, stderr io.Writer) error {
	identity, recipient, err := crypto.GenerateIdentity(o.pq)
	if err != nil {
		return fmt.Errorf("generate identity: %w", err)
	}
	if o.output == "" {
		if _, err := stdout.Write(identity); err != nil {
			return fmt.Errorf("write identity: %w", err)
		}
	} else if err := writeNewFile(o.output, identity, "identity"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Public key: %s\n", recipient)
	return nil
}
