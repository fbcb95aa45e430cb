// Package integration holds end-to-end tests of the voyageur binary against
// real MinIO servers (and an SQS emulator) started by the harnesses in
// integration/minioserver and integration/sqsserver. Product code never
// imports it.
//
// | test                          | proves                                                                 |
// |-------------------------------|------------------------------------------------------------------------|
// | TestEndToEnd                  | both SDKs on each side: sizes, odd keys, metadata, reruns, dry run, changes, deletes |
// | TestCrashResume               | SIGKILL mid-object; the next run sends only the unfinished parts; exit 3 on a held journal |
// | TestFailSafeDeletes           | an emptied source beyond max_delete deletes nothing; plain restore and verify |
// | TestConfigErrors              | bad configs exit 2 naming the field and line                           |
// | TestPartialFailure            | refused objects are listed, exit 1, stay queued, and the next run finishes |
// | TestWrongCredentials          | a clear error, exit 1, no secret in any output                         |
// | TestBadInput                  | missing buckets, an unreachable endpoint, an unusable journal: clear errors, right exit codes |
// | TestFaultyLink                | 503/500/cut/stalled answers on both links: an exact replica, no upload left |
// | TestEncryptedReplica          | age+zstd replicas decrypt with Debian's age and zstd; nothing leaks at the destination |
// | TestEncryptedLedgerCompresses | a 30 MB CSV ledger replica is under half its size                      |
// | TestEncryptedCrashResume      | SIGKILL mid encrypted upload (X25519 and post-quantum), resume, exact bytes |
// | TestDisasterRecoveryDrill     | restore latest / as-of / prefix, to a directory and a bucket, with the journal and source gone |
// | TestVerify                    | missing, extra, stale and tampered replicas are reported               |
// | TestWatchWebhook              | watch via MinIO's webhook target: replicas within seconds, deletes, metrics, SIGTERM, restart |
// | TestWatchSQS                  | watch via SQS: S3, SNS-wrapped and EventBridge messages, TestEvent, encoded keys |
// | TestWatchListen               | watch via MinIO's listen stream: aws s3 cp → encrypted replica, deletes follow, from events |
// | TestDemo                      | scripts/demo.sh (make demo) with a small archive: exit 0, the verified restore, nothing left running |
// | TestComposeFile               | docker-compose.yml passes Debian's docker-compose config; pinned images, the five services |
// | TestDockerfile                | two stages, CGO_ENABLED=0, distroless final stage, a non-root USER    |
// | TestComposeConfig             | deploy/compose/voyageur.yaml (the compose file's config) syncs, encrypted, hashed names |
//
// Every run of the binary is checked for the secret keys of the servers.
// BenchmarkWatchLag (make bench) measures watch's replication lag.
package integration
