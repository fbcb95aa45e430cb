// Package bench holds the benchmarks behind docs/BENCHMARKS.md that need
// more than one package: voyageur against rclone on two real MinIO servers
// (BenchmarkVsRclone) and from MinIO into the Azurite emulator
// (BenchmarkAzureVsRclone), the no-op scan over a million keys (BenchmarkScale),
// and in-process runs of engine.Sync to profile (BenchmarkSync*).
//
// They are Go benchmarks so that they can start MinIO servers through
// integration/minioserver, and so that `go test -cpuprofile` profiles the
// in-process ones. None of them is part of `make test`: `make bench` runs
// them, and they write their tables into docs/BENCHMARKS.md between marker
// comments, so a rerun replaces its own section and nothing else.
package bench
