package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestCrashResume SIGKILLs the real binary in the middle of a large
// multipart object, checks that a second run meanwhile is refused with exit
// 3, and that the next run resumes: it sends well under 70 % of the object
// again, the replica is byte-identical and no incomplete upload is left.
func TestCrashResume(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	const size = 50 * mib // 10 parts of 5 MiB
	writeFile(t, filepath.Join(dir, "archive.tar"), size, 42)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "archive.tar"), "s3://"+src.bucket+"/archive/2026.tar")

	// 8 MiB/s makes the copy last about 6 s: the kill lands mid-object.
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, Concurrency: 2, Bandwidth: "8MiB"})
	cmd, stderr := startSync(t, cfg)

	// While it runs, a second sync on the same journal exits 3 promptly.
	waitFor(t, 30*time.Second, "the first sync to start uploading", func() bool {
		return len(incompleteUploads(t, dst)) > 0
	})
	second := runVoyageur(t, "sync", "-c", cfg)
	if second.code != 3 || !strings.Contains(second.stderr, "locked") || second.elapsed > 10*time.Second {
		t.Errorf("second sync on a held journal: exit %d after %s, stderr %q; want exit 3 within seconds", second.code, second.elapsed, second.stderr)
	}

	// Kill once at least 6 of the 10 parts are stored.
	killAfterParts(t, cmd, dst, 6, stderr)
	if len(listObjects(t, dst, "")) != 0 {
		t.Fatal("the object completed before the kill: the test did not interrupt anything")
	}

	// The next run, without the bandwidth limit, resumes.
	cfg = writeConfig(t, dir, jobConfig{Src: src, Dst: dst, Concurrency: 2})
	res := runVoyageur(t, "sync", "--json", "-c", cfg)
	if res.code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	s := syncSummary(t, res)
	if s.Copied != 1 || s.BytesWritten <= 0 || float64(s.BytesWritten) >= 0.7*size {
		t.Errorf("resume sent %d of %d bytes (%+v); want well under 70 %%", s.BytesWritten, size, s)
	}
	t.Logf("resume sent %d of %d bytes (%.0f %%)", s.BytesWritten, size, 100*float64(s.BytesWritten)/size)
	if !strings.Contains(res.stderr, "resuming multipart upload") {
		t.Errorf("the run did not say it resumed:\n%s", res.stderr)
	}
	assertReplica(t, src, dst, "", "")
	if up := incompleteUploads(t, dst); len(up) != 0 {
		t.Errorf("incomplete uploads left: %v", up)
	}
}

// startSync starts `voyageur sync -c cfg` in the background, to be killed;
// it is stopped at the latest two minutes later or when the test ends.
func startSync(t testing.TB, cfg string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, voyageurBin, "sync", "-c", cfg)
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stderr
}

// killAfterParts SIGKILLs a running sync once the destination holds at
// least parts parts of its one multipart upload.
func killAfterParts(t testing.TB, cmd *exec.Cmd, dst side, parts int, stderr *bytes.Buffer) {
	t.Helper()
	core := minio.Core{Client: dst.client(t)}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d parts at the destination", parts), func() bool {
		ups := incompleteUploads(t, dst)
		if len(ups) != 1 {
			return false
		}
		key, id, _ := strings.Cut(ups[0], " ")
		res, err := core.ListObjectParts(context.Background(), dst.bucket, key, id, 0, 1000)
		return err == nil && len(res.ObjectParts) >= parts
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("sync was not killed mid-object (%v); stderr:\n%s", err, stderr.String())
	}
	checkOutput(t, "sync (killed)", stderr.String())
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
