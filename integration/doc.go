// Package integration holds end-to-end tests of the voyageur binary against
// real MinIO servers (and an SQS emulator, the Azurite emulator and a
// versitygw gateway) started by the harnesses in integration/minioserver,
// integration/sqsserver, integration/azuriteserver and
// integration/versitygwserver. Product code never
// imports it.
//
// | test                          | proves                                                                 |
// |-------------------------------|------------------------------------------------------------------------|
// | TestEndToEnd                  | both SDKs on each side: sizes, odd keys, metadata, reruns, dry run, changes, deletes |
// | TestCrashResume               | SIGKILL mid-object; the next run sends only the unfinished parts; exit 3 on a held journal |
// | TestCrashMatrix               | SIGKILL while a proxy holds a listing page, parts, a completion or put whose answer is lost, deletes, a restore download: exact replica, journal opens, no upload left, only unfinished bytes re-sent |
// | TestFailSafeDeletes           | an emptied source beyond max_delete deletes nothing; plain restore and verify |
// | TestConfigErrors              | bad configs exit 2 naming the field and line                           |
// | TestPartialFailure            | refused objects are listed, exit 1, stay queued, and the next run finishes |
// | TestWrongCredentials          | a clear error, exit 1, no secret in any output                         |
// | TestBadInput                  | missing buckets, wrong credentials, unknown/refusing/dropping/silent endpoints, bad YAML, sizes, recipients, name secrets, journals: one error line, exit 2 or 1, bounded time, nothing left |
// | TestFaultyLink                | 503/500/cut/stalled answers on both links: an exact replica, no upload left |
// | TestStalledLink               | endless stalls of a listing, a download body, a part and a completion are cut by 2 s timeouts and retried; the run ends promptly |
// | TestTLS                       | MinIO over https with a private CA: ca_file works (both SDKs); no or another CA stops at once with one line; plain http beyond loopback warns |
// | TestEncryptedReplica          | age+zstd replicas decrypt with Debian's age and zstd; nothing leaks at the destination |
// | TestEncryptedLedgerCompresses | a 30 MB CSV ledger replica is under half its size                      |
// | TestEncryptedCrashResume      | SIGKILL mid encrypted upload (X25519 and post-quantum), resume, exact bytes |
// | TestDisasterRecoveryDrill     | restore latest / as-of / prefix, to a directory and a bucket, with the journal and source gone |
// | TestVerify                    | missing, extra, stale and tampered replicas are reported               |
// | TestJournalRebuild            | journal file deleted, one object changed: the next sync sends only it (plain, encrypted+hashed); keyed fingerprint only |
// | TestJournalRebuildWithoutSecret | encrypted, plain names, no name secret: warns and sends everything again |
// | TestJournalRebuildDeletes     | journal deleted, keys deleted at the source: the rebuild deletes exactly their replicas (plain, hashed names), under max_delete, writes nothing |
// | TestRetention                 | governance lock on every replica; awscli cannot delete a locked version; overwrite and delete keep it; restore/verify on the locked bucket; no object lock: exit 1, nothing written |
// | TestWatchWebhook              | watch via MinIO's webhook target: replicas within seconds, deletes, metrics, SIGTERM, restart |
// | TestWatchSQS                  | watch via SQS: S3, SNS-wrapped and EventBridge messages, TestEvent, encoded keys |
// | TestWatchListen               | watch via MinIO's listen stream: aws s3 cp → encrypted replica, deletes follow, from events |
// | TestMinioToAzurePlain         | MinIO → Azurite: bytes, content type, metadata (encoded names) read with the azblob SDK; verify from Azure |
// | TestMinioToAzureEncrypted     | MinIO → Azurite encrypted, hashed names: every blob opens with `age -d` then `zstd -d`; verify and restore from Azure |
// | TestAzureToMinio              | Azurite source (a blob with an MD5, one staged in blocks) → MinIO, plain and encrypted; a rerun copies nothing |
// | TestAzureCrashResume          | SIGKILL mid-upload into Azurite (plain, encrypted): the resume sends only the blocks not staged, no marker left |
// | TestAzureBadInput             | missing container, wrong key or SAS, no default credential, unreachable account, bad azure fields: one line, exit 1 or 2, no secret |
// | TestWatchEventGrid            | watch on an Azurite source via Event Grid events on the webhook: both handshakes, both schemas, 40 events (lag p99 logged), hints checked, deletes, 401 |
// | TestResumeOverSlowLink        | SIGKILL of a 400 MiB upload at 10/50/85 % over a 40 MB/s proxy: the resume sends at most (concurrency + 1) × part_size more than missing |
// | TestRestoreDoesNotOverwrite   | restore lists differing files or objects in the way (exit 1), --dry-run says would overwrite, --overwrite replaces |
// | TestFolderMarkers             | folder markers to MinIO, fs and versitygw, encrypted and plain: replicated, restored as markers, data never dropped quietly |
// | TestVerifyTamperWithoutIdentity | byte flip, truncation, swap of encrypted replicas found without the identity (journal ETags) |
// | TestPlainTamperAndStale       | plain replicas: tampered is corrupt, out of date is stale; restores check the bytes |
// | TestWebhookPermanentFailure   | a key the source refuses for good leaves the queue, shows in status, is cleared by forget |
// | TestServe, TestServeJobs      | voyageur serve read by awscli, minio-go, rclone: listings, ranges, conditions, presigned URLs, TLS, as-of, errors, tampering |
// | TestDrill, TestDrillConfigErrors, TestDrillWatch | voyageur drill: sample restore and serve check, RTO/RPO, residency, custody, report page in chromium, exit codes, no secret |
// | TestShardedSync, TestShardedHashedNames, TestShardFlags | N shard processes: exact union, split listing, balance, 4 → 8, SIGKILL, sharded restore and verify, bad flags |
// | TestShardChangeDeletes        | 4 → 8 shards on fresh journals: keys deleted in between lose their replicas, nothing written again, max_delete per shard |
// | TestShardChangeDeletesHashed  | the same with hashed names: each shard lists the whole source and deletes the orphans of its slice of the name space written before its listing |
// | TestDemo                      | scripts/demo.sh (make demo) with a small archive: exit 0, the verified restore, nothing left running |
// | TestComposeFile               | docker-compose.yml passes Debian's docker-compose config; pinned images, the five services |
// | TestDockerfile                | two stages, CGO_ENABLED=0, distroless final stage, a non-root USER    |
// | TestComposeConfig             | deploy/compose/voyageur.yaml (the compose file's config) syncs, encrypted, hashed names |
//
// Every output of the binary is collected and checked for the secrets the
// tests handed it (the servers' secret keys, wrong ones, age identities made
// by keygen, name secrets): each run against the secrets known then, and at
// the end (TestMain) every output against every secret. What each test
// shows about reliability is summed up in docs/reliability.md.
// BenchmarkWatchLag (make bench) measures watch's replication lag.
package integration
