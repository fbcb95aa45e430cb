package integration

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/testproc"
)

// silentAddr returns a loopback address that accepts connections and never
// answers a request. It lasts as long as t.
func silentAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				c.Close()
			} else {
				conns = append(conns, c)
			}
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

// blackholeAddr returns a loopback address where connecting never
// completes, like a host whose firewall drops packets: a socket listening
// with a backlog of 0 whose one queued connection is never accepted. Linux
// drops every SYN that reaches a listener whose accept queue is full
// (tcp_conn_request, whatever tcp_syncookies says), so each further dial
// waits for its timeout; nothing depends on timing. A kernel that completes
// such a connection anyway cannot give this case: that fails the test
// under CI=true, and skips it elsewhere.
func blackholeAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A loopback handshake the kernel completes takes microseconds, so a
	// dial still waiting after a second was dropped.
	if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c2.Close()
		testproc.Unavailable(t, "this kernel completes connections beyond a full accept queue: no black hole to test against")
	}
	return addr
}

// resolverWorstCase is the longest one lookup by Go's resolver may take
// under /etc/resolv.conf: each name it tries (the name, then one per
// search domain), each attempt, each server, up to the timeout each.
func resolverWorstCase() time.Duration {
	timeout, attempts, servers, names := 5, 2, 0, 1 // resolv.conf(5) defaults
	b, _ := os.ReadFile("/etc/resolv.conf")
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers++
		case "search", "domain":
			names = len(f) // the last one counts
		case "options":
			for _, o := range f[1:] {
				if v, ok := strings.CutPrefix(o, "timeout:"); ok {
					timeout, _ = strconv.Atoi(v)
				} else if v, ok := strings.CutPrefix(o, "attempts:"); ok {
					attempts, _ = strconv.Atoi(v)
				}
			}
		}
	}
	if servers == 0 {
		servers = 2 // Go asks 127.0.0.1:53 and [::1]:53
	}
	timeout, attempts = min(max(timeout, 1), 30), min(max(attempts, 1), 5) // Go's limits
	return time.Duration(names*attempts*servers*timeout) * time.Second
}

// needNoSuchHost checks that this machine's resolver answers that host does
// not exist (NXDOMAIN), which the unknown-host case relies on: a machine
// without a reachable DNS server fails the test under CI=true, and skips
// it elsewhere.
func needNoSuchHost(t testing.TB, host string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), resolverWorstCase()+time.Second)
	defer cancel()
	var de *net.DNSError
	if _, err := net.DefaultResolver.LookupHost(ctx, host); !errors.As(err, &de) || !de.IsNotFound {
		testproc.Unavailable(t, fmt.Sprintf("the resolver does not say that %s does not exist (%v): no DNS server answers here", host, err))
	}
}

// TestBadInput: each kind of bad input gets a one-line error naming the
// thing, the right exit code (2 for configuration, 1 at run time), within a
// bound even when the endpoint never answers, and leaves nothing behind: no
// object at the destination, and no journal when the configuration is
// refused.
func TestBadInput(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.csv"), 100, 1)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "a.csv"), "s3://"+src.bucket+"/a.csv")
	closed := freeAddr(t) // nothing listens there
	wrong := "wrong-secret-" + srcSrv.SecretKey
	addSecret(wrong)
	k := newKeys(t, dir, false)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("12345678"), 0o600)
	addSecretFile(t, short)
	journalDir := filepath.Join(dir, "a-directory")
	os.MkdirAll(journalDir, 0o700)
	// A damaged journal (random bytes) and a truncated one (a real journal
	// cut after its meta pages).
	damaged, truncated := filepath.Join(dir, "damaged.db"), filepath.Join(dir, "truncated.db")
	if err := os.WriteFile(damaged, randomData(64<<10, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	// (made by a sync of an empty prefix: nothing reaches the destination)
	if res := runVoyageur(t, "sync", "-c", writeConfig(t, t.TempDir(), jobConfig{Src: src, Dst: dst, SrcPrefix: "none/", Journal: truncated})); res.code != 0 {
		t.Fatalf("sync: exit %d\n%s", res.code, res.stderr)
	}
	if err := os.Truncate(truncated, 8192); err != nil {
		t.Fatal(err)
	}
	at := func(url string) side {
		return side{srv: srcSrv, bucket: src.bucket, kind: "aws", url: url, extra: "timeouts: {connect: 1s, response: 1s}"}
	}
	unknownHost := func(t testing.TB) side {
		needNoSuchHost(t, "nosuchhost.invalid")
		return at("http://nosuchhost.invalid:9000")
	}

	cases := []struct {
		name string
		cfg  jobConfig
		src  func(t testing.TB) side  // when set, the source, made in the case's subtest
		edit func(yaml string) string // changes the rendered config
		code int
		want []string
		// once: the store is asked once, the error is not one to retry (no
		// "retrying storage request" warning).
		once  bool
		bound time.Duration
	}{
		{name: "missing source bucket", cfg: jobConfig{Src: side{srv: srcSrv, bucket: "no-such-source", kind: "aws"}, Dst: dst},
			code: 1, want: []string{"list source", "no-such-source", "NoSuchBucket"}, once: true},
		{name: "missing destination bucket", cfg: jobConfig{Src: src, Dst: side{srv: dstSrv, bucket: "no-such-replica", kind: "minio"}},
			code: 1, want: []string{"no-such-replica", "NoSuchBucket"}, once: true},
		{name: "wrong credentials", cfg: jobConfig{Src: side{srv: srcSrv, bucket: src.bucket, kind: "aws", secretKey: wrong}, Dst: dst},
			code: 1, want: []string{"list source", src.bucket, "SignatureDoesNotMatch"}, once: true},
		// One lookup, not retried: however slow this machine's resolver,
		// the run ends within the usual bound plus one lookup.
		{name: "unknown endpoint host", cfg: jobConfig{Dst: dst}, src: unknownHost,
			code: 1, want: []string{"list source", "nosuchhost.invalid", "no such host"}, once: true, bound: 10*time.Second + resolverWorstCase()},
		{name: "unreachable endpoint", cfg: jobConfig{Src: at("http://" + closed), Dst: dst},
			code: 1, want: []string{"list source", "connection refused"}, bound: 15 * time.Second},
		{name: "endpoint that drops connections", cfg: jobConfig{Dst: dst}, src: func(t testing.TB) side { return at("http://" + blackholeAddr(t)) },
			code: 1, want: []string{"list source", "i/o timeout"}, bound: 15 * time.Second},
		{name: "endpoint that never answers", cfg: jobConfig{Dst: dst}, src: func(t testing.TB) side { return at("http://" + silentAddr(t)) },
			code: 1, want: []string{"list source", "timeout"}, bound: 15 * time.Second},
		{name: "malformed yaml", cfg: jobConfig{Src: src, Dst: dst}, edit: func(y string) string { return y + "  - name: [unclosed\n" },
			code: 2, want: []string{"voyageur.yaml", "line"}},
		{name: "bad size", cfg: jobConfig{Src: src, Dst: dst, PartSize: "5 parsecs"},
			code: 2, want: []string{"line 11", `"5 parsecs"`, "unknown unit"}},
		{name: "part size too small", cfg: jobConfig{Src: src, Dst: dst, PartSize: "1MiB"},
			code: 2, want: []string{"jobs[0].transfer.part_size", "5MiB"}},
		{name: "invalid recipient", cfg: jobConfig{Src: src, Dst: dst, ExtraJobLines: `    encryption: {recipients: ["age1notakey"], names: plain}` + "\n"},
			code: 2, want: []string{"line 13", "jobs[0].encryption.recipients[0]", "age1notakey"}},
		{name: "unreadable name secret", cfg: jobConfig{Src: src, Dst: dst, ExtraJobLines: strings.Replace(k.encryptionYAML("hashed", "zstd"), k.nameSecret, filepath.Join(dir, "missing.key"), 1)},
			code: 2, want: []string{"name_secret_file", "missing.key", "no such file"}},
		{name: "short name secret", cfg: jobConfig{Src: src, Dst: dst, ExtraJobLines: strings.Replace(k.encryptionYAML("hashed", "zstd"), k.nameSecret, short, 1)},
			code: 2, want: []string{"name_secret_file", "short.key", "8 bytes, need at least 32"}},
		{name: "journal under a file", cfg: jobConfig{Src: src, Dst: dst, Journal: filepath.Join(dir, "a.csv", "journal.db")},
			code: 2, want: []string{"journal", "a.csv"}},
		{name: "journal is a directory", cfg: jobConfig{Src: src, Dst: dst, Journal: journalDir},
			code: 2, want: []string{"journal", "a-directory"}},
		{name: "damaged journal", cfg: jobConfig{Src: src, Dst: dst, Journal: damaged},
			code: 2, want: []string{"journal: open " + damaged, "not a valid journal"}},
		{name: "truncated journal", cfg: jobConfig{Src: src, Dst: dst, Journal: truncated},
			code: 2, want: []string{"journal: open " + truncated, "not a valid journal"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub := filepath.Join(dir, fmt.Sprint(i))
			os.MkdirAll(sub, 0o700)
			if c.src != nil {
				c.cfg.Src = c.src(t)
			}
			path := writeConfig(t, sub, c.cfg)
			if c.edit != nil {
				raw, _ := os.ReadFile(path)
				os.WriteFile(path, []byte(c.edit(string(raw))), 0o600)
			}
			res := runVoyageur(t, "sync", "-c", path)
			if res.code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", res.code, c.code, res.stdout, res.stderr)
			}
			// The error is one line of stderr; the rest is warnings
			// (retries) and, at run time, the summary on stdout.
			var errs []string
			for line := range strings.Lines(res.stderr) {
				if strings.HasPrefix(line, "voyageur: ") || strings.Contains(line, "level=ERROR") {
					errs = append(errs, strings.TrimSpace(line))
				}
			}
			if len(errs) != 1 {
				t.Errorf("%d error lines, want 1:\n%s", len(errs), res.stderr)
			} else {
				for _, w := range c.want {
					if !strings.Contains(errs[0], w) {
						t.Errorf("error lacks %q: %s", w, errs[0])
					}
				}
				if strings.Contains(errs[0], "operation error") {
					t.Errorf("the error shows the SDK's layers: %s", errs[0])
				}
				t.Logf("exit %d after %s: %s", res.code, res.elapsed.Round(time.Millisecond), errs[0])
			}
			if n := strings.Count(res.stderr, "retrying storage request"); c.once && n > 0 {
				t.Errorf("retried %d times, want no retry:\n%s", n, res.stderr)
			}
			if bound := cmp.Or(c.bound, 10*time.Second); res.elapsed > bound {
				t.Errorf("took %s, want at most %s", res.elapsed, bound)
			}
			if _, err := os.Stat(filepath.Join(sub, "journal.db")); c.code == 2 && err == nil {
				t.Error("a refused configuration created the journal")
			}
		})
	}
	if got := listObjects(t, dst, ""); len(got) != 0 {
		t.Errorf("bad runs left %d objects at the destination", len(got))
	}
	if up := incompleteUploads(t, dst); len(up) != 0 {
		t.Errorf("bad runs left uploads: %v", up)
	}
}
