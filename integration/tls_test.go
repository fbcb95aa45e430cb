package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a certificate for 127.0.0.1 and returns what
// minioserver.StartTLS needs.
func (ca testCA) serverCert(t testing.TB) minioserver.Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return minioserver.Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		CAPEM:   ca.pem,
	}
}

// TestTLS: a destination MinIO serving https with a certificate from a
// private CA, through both SDKs. With ca_file the sync makes an exact
// replica; without it, or with another CA, the run stops at once (no
// retries) with one error naming the certificate problem, exit 1, nothing
// written. A plain http endpoint beyond loopback is warned about.
func TestTLS(t *testing.T) {
	ca, other := newTestCA(t, "voyageur test CA"), newTestCA(t, "another CA")
	srcSrv := startServer(t)
	dstSrv := minioserver.StartTLS(t, ca.serverCert(t))
	addSecret(dstSrv.SecretKey)
	if !strings.HasPrefix(dstSrv.URL, "https://") {
		t.Fatalf("StartTLS served %s", dstSrv.URL)
	}
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	seedObjects(t, src, map[string]int{"a.csv": 1000, "b/c.json": 20000, "large.bin": 6*mib + 1})
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other-ca.pem")
	os.WriteFile(caFile, ca.pem, 0o644)
	os.WriteFile(otherFile, other.pem, 0o644)

	for _, kind := range []string{"minio", "aws"} {
		t.Run(kind, func(t *testing.T) {
			bucket := dstSrv.CreateBucket(t, false)
			for _, c := range []struct{ name, extra, reason string }{
				{"no ca_file", "", "certificate signed by unknown authority"},
				{"another CA", fmt.Sprintf("ca_file: %q", otherFile), "certificate signed by unknown authority"},
			} {
				dst := side{srv: dstSrv, bucket: bucket, kind: kind, extra: c.extra}
				sub := filepath.Join(t.TempDir(), "cfg")
				os.MkdirAll(sub, 0o700)
				res := runVoyageur(t, "sync", "-c", writeConfig(t, sub, jobConfig{Src: src, Dst: dst}))
				out := res.stdout + res.stderr
				if res.code != 1 || res.elapsed > 10*time.Second {
					t.Errorf("%s: exit %d after %s, want 1 at once\n%s", c.name, res.code, res.elapsed, out)
				}
				var lines []string
				for line := range strings.Lines(res.stderr) {
					if strings.Contains(line, "certificate") {
						lines = append(lines, line)
					}
				}
				if len(lines) != 1 || !strings.Contains(lines[0], "tls certificate not trusted: x509: "+c.reason) ||
					!strings.Contains(lines[0], dstSrv.Host) || strings.Contains(lines[0], "operation error") || strings.Contains(lines[0], "retry") {
					t.Errorf("%s: want one short line naming the destination and the certificate problem, got %d:\n%s", c.name, len(lines), out)
				} else {
					t.Logf("%s: exit %d after %s: %s", c.name, res.code, res.elapsed.Round(time.Millisecond), strings.TrimSpace(lines[0]))
				}
				if strings.Contains(out, "failed a.csv") {
					t.Errorf("%s: the run failed object by object:\n%s", c.name, out)
				}
			}
			dst := side{srv: dstSrv, bucket: bucket, kind: kind, extra: fmt.Sprintf("ca_file: %q", caFile)}
			if len(listObjects(t, dst, "")) != 0 {
				t.Fatal("a refused run wrote to the destination")
			}
			sub := filepath.Join(t.TempDir(), "cfg")
			os.MkdirAll(sub, 0o700)
			cfg := writeConfig(t, sub, jobConfig{Src: src, Dst: dst})
			res := runVoyageur(t, "sync", "--json", "-c", cfg)
			if res.code != 0 || strings.Contains(res.stderr, "plain http") {
				t.Fatalf("with ca_file: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
			}
			assertSameBytes(t, src, dst)
			if up := incompleteUploads(t, dst); len(up) != 0 {
				t.Errorf("incomplete uploads left: %v", up)
			}
			// The aws CLI reads the replica through the same CA.
			if out := string(dstSrv.AWS(t, "s3api", "list-objects-v2", "--bucket", bucket)); !strings.Contains(out, "large.bin") {
				t.Errorf("aws s3api list-objects-v2 over https: %s", out)
			}
		})
	}

	t.Run("plain http beyond loopback", func(t *testing.T) {
		dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio", extra: fmt.Sprintf("ca_file: %q", caFile)}
		cfg := writeConfig(t, t.TempDir(), jobConfig{Src: src, Dst: dst})
		raw, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		raw = []byte(strings.Replace(string(raw), "endpoints:\n", "endpoints:\n  remote: {type: minio, url: \"http://minio.example.ca:9000\", access_key: k, secret_key: s}\n", 1))
		os.WriteFile(cfg, raw, 0o600)
		res := runVoyageur(t, "sync", "--dry-run", "-c", cfg)
		if res.code != 0 || !strings.Contains(res.stderr, "plain http") || !strings.Contains(res.stderr, "host=minio.example.ca") {
			t.Errorf("exit %d, want a warning naming minio.example.ca:\n%s", res.code, res.stderr)
		}
	})
}
