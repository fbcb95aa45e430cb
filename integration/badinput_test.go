package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput: each kind of bad input gets a one-line error naming the
// thing, the right exit code (2 for configuration, 1 at run time), promptly,
// and leaves nothing behind at the destination.
func TestBadInput(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.csv"), 100, 1)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "a.csv"), "s3://"+src.bucket+"/a.csv")
	closed := freeAddr(t) // nothing listens there
	// A damaged journal (random bytes) and a truncated one (a real journal
	// cut after its meta pages): exit 2 naming the file.
	damaged, truncated := filepath.Join(dir, "damaged.db"), filepath.Join(dir, "truncated.db")
	if err := os.WriteFile(damaged, randomData(64<<10, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := runVoyageur(t, "status", "-c", writeConfig(t, t.TempDir(), jobConfig{Src: src, Dst: dst, Journal: truncated})); res.code != 0 {
		t.Fatalf("status: exit %d\n%s", res.code, res.stderr)
	}
	if err := os.Truncate(truncated, 8192); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		cfg  jobConfig
		code int
		want []string
	}{
		{"missing source bucket", jobConfig{Src: side{srv: srcSrv, bucket: "no-such-source", kind: "aws"}, Dst: dst},
			1, []string{"list source", "no-such-source", "NoSuchBucket"}},
		{"missing destination bucket", jobConfig{Src: src, Dst: side{srv: dstSrv, bucket: "no-such-replica", kind: "minio"}},
			1, []string{"no-such-replica", "NoSuchBucket"}},
		{"unreachable endpoint", jobConfig{Src: side{srv: srcSrv, bucket: src.bucket, kind: "aws", url: "http://" + closed}, Dst: dst},
			1, []string{"list source", "connection refused"}},
		{"journal under a file", jobConfig{Src: src, Dst: dst, Journal: filepath.Join(dir, "a.csv", "journal.db")},
			2, []string{"journal", "a.csv"}},
		{"damaged journal", jobConfig{Src: src, Dst: dst, Journal: damaged},
			2, []string{"journal: open " + damaged, "not a valid journal"}},
		{"truncated journal", jobConfig{Src: src, Dst: dst, Journal: truncated},
			2, []string{"journal: open " + truncated, "not a valid journal"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub := filepath.Join(dir, fmt.Sprint(i))
			os.MkdirAll(sub, 0o700)
			res := runVoyageur(t, "sync", "-c", writeConfig(t, sub, c.cfg))
			msg := strings.TrimSpace(res.stderr + res.stdout)
			if res.code != c.code {
				t.Errorf("exit %d, want %d\n%s", res.code, c.code, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("output lacks %q:\n%s", w, msg)
				}
			}
			if res.elapsed > 30*time.Second {
				t.Errorf("took %s", res.elapsed)
			}
		})
	}
	if got := listObjects(t, dst, ""); len(got) != 0 {
		t.Errorf("bad runs left %d objects at the destination", len(got))
	}
}
