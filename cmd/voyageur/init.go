package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

type initOptions struct {
	output string
}

func newInitCmd() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init [-o FILE]",
		Short: "Write a commented sample configuration to start from",
		Long: `init prints a commented sample configuration (an AWS source replicated,
encrypted, to OVHcloud Beauharnois) on stdout, or writes it to FILE (created
0600, never overwritten). Credentials come from ${VARS}, so the file holds no
secret. Edit the endpoints, buckets and recipients, then try it with
sync --dry-run. docs/config.md describes every field.`,
		Example: `  voyageur init -o /etc/voyageur/voyageur.yaml
  voyageur keygen -o /media/offline/identity.txt 2>&1 | sed -n 's/^Public key: //p' > /etc/voyageur/recipients.txt
  head -c 32 /dev/urandom > /etc/voyageur/names.key && chmod 600 /etc/voyageur/names.key
  voyageur sync -c /etc/voyageur/voyageur.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the sample to this new file instead of stdout")
	return cmd
}

func runInit(o initOptions, stdout, stderr io.Writer) error {
	if o.output == "" {
		_, err := io.WriteString(stdout, sampleConfig)
		return err
	}
	if err := writeNewFile(o.output, []byte(sampleConfig), "configuration"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s: edit the endpoints, buckets and recipients, then run voyageur sync -c %s --dry-run\n", o.output, o.output)
	return nil
}

// sampleConfig is what init writes. TestInitSample parses it, so it stays a
// valid configuration.
const sampleConfig = `# voyageur configuration (docs/config.md describes every field).
# ${VAR} is replaced by the environment variable VAR: keep secrets out of
# this file. Try changes with: voyageur sync -c FILE --dry-run

# The local journal: pending changes, the index of what is replicated and
# checkpoints of unfinished uploads. Local disk, one process at a time.
journal: /var/lib/voyageur/journal.db

endpoints:
  # The source. Without access_key/secret_key, type aws uses the AWS default
  # credential chain (environment, shared config, SSO, instance role).
  # voyageur only reads it: ListBucket and GetObject are enough.
  aws-prod:
    type: aws
    region: us-east-1

  # The Canadian copy: OVHcloud Object Storage in Beauharnois (region bhs;
  # ca-east-tor for Toronto), with the S3 credentials of an OVHcloud user.
  bhs:
    type: ovh
    region: bhs
    access_key: ${OVH_ACCESS_KEY}
    secret_key: ${OVH_SECRET_KEY}

  # Or your own MinIO (a private CA goes in ca_file):
  # tor-minio:
  #   type: minio
  #   url: https://minio.example.ca:9000
  #   access_key: ${MINIO_ACCESS_KEY}
  #   secret_key: ${MINIO_SECRET_KEY}
  #   ca_file: /etc/voyageur/ca.pem

jobs:
  - name: ledgers
    source: aws-prod:fintech-ledgers/daily/     # ENDPOINT:BUCKET[/PREFIX]
    destination: bhs:ledgers-replica/
    # include: ["**/*.csv"]                     # globs, relative to the source prefix
    # exclude: ["tmp/**"]

    # Client-side encryption: the provider stores age files it cannot read.
    # voyageur keygen -o identity.txt prints a recipient (age1...): put it in
    # the recipients file, one per line (or inline: recipients: ["age1..."]).
    # Keep the identity offline: it is needed only to restore and verify.
    encryption:
      recipients_file: /etc/voyageur/recipients.txt
      compression: zstd                         # zstd | none
      names: hashed                             # hashed | plain
      # At least 32 random bytes: head -c 32 /dev/urandom > names.key
      # Keep a copy with the identity.
      name_secret_file: /etc/voyageur/names.key

    deletes: keep                               # keep | propagate
    max_delete: 10%                             # a run that would delete more deletes nothing
    transfer:
      part_size: 16MiB
      concurrency: 16
      memory: 512MiB

    # voyageur watch only: event sources and the reconcile period.
    # events:
    #   - sqs: https://sqs.us-east-1.amazonaws.com/123456789012/ledgers-events
    # rescan: 1h
`
