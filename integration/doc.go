// Package integration holds end-to-end tests of the voyageur binary against
// real MinIO servers started by the harness in integration/minioserver.
// Product code never imports it.
//
// | test                         | proves                                                        |
// |------------------------------|---------------------------------------------------------------|
// | TestEndToEnd                 | both SDKs on each side: sizes, odd keys, metadata, reruns, dry run, changes, deletes |
// | TestCrashResume              | SIGKILL mid-object, resume sends only the unfinished parts      |
// | TestJournalLocked            | a second run on a held journal exits 3 promptly               |
// | TestFailSafeDeletes          | an emptied source beyond max_delete deletes nothing           |
// | TestConfigErrors             | bad configs exit 2 naming the field                           |
package integration
