package replicator

import "github.com/voyageur-ca/voyageur/crypto"

// FingerprintMeta is the user metadata key (x-amz-meta-voyageur-fp) of a
// replica's fingerprint (docs/FORMAT.md): it lets a sync whose journal was
// lost recognize the replicas that are up to date instead of sending them
// again.
const FingerprintMeta = "voyageur-fp"

// FingerprintKey returns the key of the job's replica fingerprints, nil
// when the job writes none: an encrypted job without a name secret has no
// key the provider cannot know (recipients are public keys), and an unkeyed
// fingerprint would let the provider test a guess of the source ETag.
func (job *Job) FingerprintKey() ([]byte, error) {
	switch {
	case job.Encryption == nil:
		return crypto.FingerprintKey(nil)
	case len(job.Encryption.NameSecret) > 0:
		return crypto.FingerprintKey(job.Encryption.NameSecret)
	}
	return nil, nil
}

// FingerprintFormat is the format the job's fingerprints name: the
// index's format, and for encrypted replicas the recipients they are
// sealed to (crypto.SealedFormat). The index leaves recipients out, so
// that adding one does not send everything again; a rebuild must not
// adopt replicas that the job's recipients cannot open, as after a key
// rotation.
func (job *Job) FingerprintFormat() (string, error) {
	if job.Encryption == nil {
		return "", nil
	}
	return crypto.SealedFormat(job.Encryption.Options.Recipients)
}
