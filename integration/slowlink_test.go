package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	"golang.org/x/time/rate"
)

// slowLink is a loopback proxy in front of a server that carries request
// bodies at a fixed rate for all connections together, as a WAN link to
// Canada would, and counts them.
type slowLink struct {
	lim  *rate.Limiter
	sent atomic.Int64
}

func newSlowLink(t testing.TB, target string, bytesPerSecond int) (*slowLink, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{lim: rate.NewLimiter(rate.Limit(bytesPerSecond), 256<<10)}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		// The signature covers the Host the client dialled: keep it.
		pr.Out.Host = pr.In.Host
		if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
			pr.Out.Body = &paced{ctx: pr.Out.Context(), r: pr.Out.Body, l: l}
		}
	}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return l, srv.URL
}

type paced struct {
	ctx context.Context
	r   io.ReadCloser
	l   *slowLink
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > p.l.lim.Burst() {
		b = b[:p.l.lim.Burst()]
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.l.sent.Add(int64(n))
		if werr := p.l.lim.WaitN(p.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (p *paced) Close() error { return p.r.Close() }

// TestResumeOverSlowLink: over a 40 MB/s link to the destination, an
// upload of 400 MiB SIGKILLed early, midway and late resumes each time
// sending at most (concurrency + 1) × part_size bytes more than what the
// destination was missing, ends with an exact replica (encrypted: opened
// with Debian's age and zstd) and leaves no multipart upload behind. Before
// the pipeline read ahead without bound, a kill at any moment could leave
// nothing to resume.
func TestResumeOverSlowLink(t *testing.T) {
	if testing.Short() {
		t.Skip("400 MiB over a 40 MB/s link")
	}
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	const size, partSize, concurrency = 400 * mib, 8 * mib, 4
	file := filepath.Join(dir, "vault.bin")
	writeFile(t, file, size, 9)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", file, "s3://"+src.bucket+"/vault/2026.bin")
	want := sha256File(t, file)
	link, linkURL := newSlowLink(t, dstSrv.URL, 40_000_000)
	k := newKeys(t, dir, false)

	for _, enc := range []bool{true, false} {
		for _, at := range []float64{0.1, 0.5, 0.85} {
			name := fmt.Sprintf("plain/%.0f%%", at*100)
			if enc {
				name = fmt.Sprintf("encrypted/%.0f%%", at*100)
			}
			t.Run(name, func(t *testing.T) {
				dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
				run := t.TempDir()
				extra := ""
				if enc {
					extra = k.encryptionYAML("plain", "zstd")
				}
				cfg := writeConfig(t, run, jobConfig{Src: src, Dst: side{srv: dstSrv, bucket: dst.bucket, kind: "minio", url: linkURL},
					PartSize: "8MiB", Concurrency: concurrency, Journal: filepath.Join(run, "journal.db"), ExtraJobLines: extra})
				cmd, stderr := startSync(t, cfg)
				killAfterParts(t, cmd, dst, int(at*size/partSize), stderr)
				ups := incompleteUploads(t, dst)
				if len(ups) != 1 {
					t.Fatalf("uploads after the kill: %v", ups)
				}
				key, id, _ := strings.Cut(ups[0], " ")
				core := minio.Core{Client: dst.client(t)}
				parts, err := core.ListObjectParts(context.Background(), dst.bucket, key, id, 0, 10000)
				if err != nil {
					t.Fatal(err)
				}
				var stored int64
				for _, p := range parts.ObjectParts {
					stored += p.Size
				}

				before := link.sent.Load()
				res := runVoyageur(t, "sync", "--json", "-c", cfg)
				if res.code != 0 {
					t.Fatalf("resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
				}
				onLink := link.sent.Load() - before
				s := syncSummary(t, res)
				info, err := dst.client(t).StatObject(context.Background(), dst.bucket, key, minio.StatObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				missing := info.Size - stored
				excess := s.BytesWritten - missing
				t.Logf("killed with %d of %d replica bytes stored (%d parts); the resume sent %d bytes (%d through the link): %d more than missing, bound %d",
					stored, info.Size, len(parts.ObjectParts), s.BytesWritten, onLink, excess, (concurrency+1)*partSize)
				if s.Copied != 1 || excess > (concurrency+1)*partSize {
					t.Errorf("resume sent %d bytes, %d more than the %d missing; bound (concurrency + 1) × part_size = %d", s.BytesWritten, excess, missing, (concurrency+1)*partSize)
				}
				if up := incompleteUploads(t, dst); len(up) != 0 {
					t.Errorf("incomplete uploads left: %v", up)
				}
				got := filepath.Join(run, "got")
				if err := dst.client(t).FGetObject(context.Background(), dst.bucket, key, got, minio.GetObjectOptions{}); err != nil {
					t.Fatal(err)
				}
				if enc {
					out := filepath.Join(run, "out")
					if err := os.Mkdir(out, 0o700); err != nil {
						t.Fatal(err)
					}
					in := filepath.Join(run, "in")
					if err := os.Mkdir(in, 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.Rename(got, filepath.Join(in, "replica")); err != nil {
						t.Fatal(err)
					}
					decryptWithCLIs(t, k.identity, in, out)
					got = filepath.Join(out, "replica")
				}
				if sha256File(t, got) != want {
					t.Fatal("the replica does not hold the source bytes")
				}
			})
		}
	}
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
