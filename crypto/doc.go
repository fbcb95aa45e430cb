// Package crypto produces and reads voyageur replica objects.
//
// A replica object is a standard age v1 file (https://age-encryption.org/v1)
// whose plaintext is a zstd stream, so that anyone holding an identity can
// recover the source object without voyageur:
//
//	age -d -i identity.txt OBJECT | zstd -d > original
//
// The zstd stream is a META skippable frame (JSON description of the source
// object), zstd data frames of at most [FrameSize] plaintext bytes each, PAD
// skippable frames aligning every multipart part but the last to a STREAM
// chunk boundary, and a TRAILER skippable frame (size, SHA-256, part index).
// docs/FORMAT.md specifies the layout byte by byte.
//
// The age library generates its own file key, so it cannot re-produce a part
// of an object after a crash. This package therefore writes the age header
// and the STREAM chunks itself ([Writer]), deterministically: the same file
// key, nonce, chunk counters and source bytes always give the same bytes, so
// multipart parts can be produced in parallel and re-produced on resume
// without ever sealing two different plaintexts under one STREAM nonce.
// Everything is read back only through the age library ([Decrypt],
// [ReadMeta]), so every restore proves compatibility with the reference
// implementation.
//
// The replicating host needs only recipients (public keys). Identities
// (secret keys), file keys, [Writer.State] and name secrets are secret: no
// function of this package puts them in an error message.
package crypto
