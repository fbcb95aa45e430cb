package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodConfig = `
journal: /tmp/j.db
endpoints:
  src: {type: aws, url: "http://127.0.0.1:9000", region: us-east-1, path_style: true, access_key: "${VOY_TEST_K}", secret_key: "${VOY_TEST_S}"}
  dst: {type: minio, url: "http://127.0.0.1:9001", access_key: k, secret_key: s}
  bhs: {type: ovh, region: bhs}
jobs:
  - name: ledgers
    source: src:fintech-ledgers/daily/
    destination: dst:ledgers-replica
    include: ["**/*.parquet"]
    exclude: ["tmp/**"]
    deletes: propagate
    max_delete: 10%
    transfer: {part_size: 16MiB, concurrency: 8, memory: 256MiB, bandwidth: 50MB/s}
`

func TestParseConfig(t *testing.T) {
	t.Setenv("VOY_TEST_K", "AKIDEXAMPLE")
	t.Setenv("VOY_TEST_S", "s3cr3t with spaces: and # signs")
	cfg, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	ep := cfg.Endpoints["src"]
	if ep.AccessKey != "AKIDEXAMPLE" || ep.SecretKey != "s3cr3t with spaces: and # signs" || !ep.PathStyle {
		t.Errorf("endpoint src not expanded: %+v", ep)
	}
	j := cfg.Jobs[0]
	if j.Source != (Location{Endpoint: "src", Bucket: "fintech-ledgers", Prefix: "daily/", line: j.Source.line}) {
		t.Errorf("source = %+v", j.Source)
	}
	if j.Destination.Prefix != "" || j.Destination.Bucket != "ledgers-replica" {
		t.Errorf("destination = %+v", j.Destination)
	}
	if j.Transfer.PartSize != 16<<20 || j.Transfer.Memory != 256<<20 || j.Transfer.Bandwidth != 50e6 || j.Transfer.Concurrency != 8 {
		t.Errorf("transfer = %+v", j.Transfer)
	}
}

func TestParseRetention(t *testing.T) {
	t.Setenv("VOY_TEST_K", "k")
	t.Setenv("VOY_TEST_S", "s")
	cfg, err := ParseConfig([]byte(goodConfig + "    retention: {mode: compliance, days: 2555}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Jobs[0].Retention; r == nil || r.Mode != "compliance" || r.Days != 2555 {
		t.Errorf("retention = %+v", r)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"1048576": 1 << 20, "5MiB": 5 << 20, "16MB": 16e6, "1.5GiB": 3 << 29, "64k": 64 << 10,
		"50MB/s": 50e6, "0": 0, "2 GiB": 2 << 30, "16mib": 16 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "5XB", "-1", "1e9", "12 parsecs"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted a bad size", in)
		}
	}
}

func TestConfigErrorsNameFieldAndLine(t *testing.T) {
	t.Setenv("VOY_TEST_K", "k")
	t.Setenv("VOY_TEST_S", "s")
	cases := []struct {
		name, from, to string
		want           []string
	}{
		{"unknown field", "    deletes: propagate", "    delets: propagate", []string{"line 13", `unknown field "delets"`, "jobs[0]"}},
		{"unknown nested field", "concurrency: 8,", "concurency: 8,", []string{"line 15", `"concurency"`, "jobs[0].transfer"}},
		{"bad size", "part_size: 16MiB", "part_size: 16 furlongs", []string{"line 15", "jobs[0].transfer.part_size", "furlongs"}},
		{"size in words", "part_size: 16MiB", "part_size: five", []string{"line 15", `jobs[0].transfer.part_size: "five" is not a size`}},
		{"count in words", "concurrency: 8,", "concurrency: eight,", []string{"line 15", "jobs[0].transfer.concurrency:", "eight"}},
		{"bad encryption scalar", "    deletes: propagate", "    deletes: propagate\n    encryption: yes-please", []string{"line 14", "jobs[0].encryption:", "use none"}},
		{"part size too small", "part_size: 16MiB", "part_size: 1MiB", []string{"line 8", "part_size", "5MiB"}},
		{"missing endpoint", "source: src:fintech", "source: nowhere:fintech", []string{"line 9", "jobs[0].source", `unknown endpoint "nowhere"`}},
		{"malformed location", "destination: dst:ledgers-replica", "destination: dst-ledgers-replica", []string{"line 10", "jobs[0].destination:", "ENDPOINT:BUCKET"}},
		{"bad bucket", "destination: dst:ledgers-replica", "destination: dst:Ledgers_Replica", []string{"line 10", "jobs[0].destination:", "bucket name"}},
		{"unset variable", "${VOY_TEST_K}", "${VOY_TEST_UNSET_VAR}", []string{"line 4", "endpoints.src.access_key", "VOY_TEST_UNSET_VAR", "not set"}},
		{"bad type", "type: minio", "type: ceph", []string{"line 5", "endpoints.dst", `"ceph"`}},
		{"bad ovh region", "region: bhs}", "region: gra}", []string{"line 6", "bhs", "ca-east-tor"}},
		{"bad deletes", "deletes: propagate", "deletes: sometimes", []string{"line 8", "jobs[0].deletes"}},
		{"bad max_delete", "max_delete: 10%", "max_delete: lots", []string{"jobs[0].max_delete"}},
		{"bad retention mode", "    deletes: propagate", "    deletes: propagate\n    retention: {mode: legal-hold, days: 1}", []string{"line 14", "jobs[0].retention.mode", "legal-hold", "governance or compliance"}},
		{"retention without days", "    deletes: propagate", "    deletes: propagate\n    retention: {mode: governance}", []string{"line 14", "jobs[0].retention.days", "0"}},
		{"unknown retention field", "    deletes: propagate", "    deletes: propagate\n    retention: {mode: governance, years: 1}", []string{"line 14", `unknown field "years"`, "retention"}},
		{"bad glob", `"tmp/**"`, `"tmp/[**"`, []string{"glob", "tmp/[**"}},
		{"memory below part size", "memory: 256MiB", "memory: 8MiB", []string{"transfer.memory"}},
		{"not yaml", "jobs:", "jobs: [", []string{"line"}},
		{"bad timeout", "access_key: k, secret_key: s}", "access_key: k, secret_key: s, timeouts: {idle: soon}}", []string{"line 5", `endpoints.dst.timeouts.idle: "soon" is not a duration`}},
		{"timeout too short", "access_key: k, secret_key: s}", "access_key: k, secret_key: s, timeouts: {response: 10ms}}", []string{"line 5", "endpoints.dst", "timeouts.response", "10ms"}},
		{"unknown timeout", "access_key: k, secret_key: s}", "access_key: k, secret_key: s, timeouts: {read: 5s}}", []string{"line 5", `unknown field "read"`, "endpoints.dst.timeouts"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := strings.Replace(goodConfig, c.from, c.to, 1)
			if raw == goodConfig {
				t.Fatalf("case does not change the config: %q", c.from)
			}
			_, err := ParseConfig([]byte(raw))
			if err == nil {
				t.Fatal("bad config accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigErrorsNeverShowSecrets(t *testing.T) {
	t.Setenv("VOY_TEST_K", "AKIDSECRETVALUE")
	t.Setenv("VOY_TEST_S", "verysecretvalue")
	raw := strings.Replace(goodConfig, "source: src:fintech-ledgers/daily/", "source: src:BAD_BUCKET", 1)
	_, err := ParseConfig([]byte(raw))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, s := range []string{"AKIDSECRETVALUE", "verysecretvalue"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

// TestConfigErrorsNameVariableNotValue: an error about a value expanded
// from ${VAR} names the field and the variable, never the value (which may
// be a secret in the wrong variable).
func TestConfigErrorsNameVariableNotValue(t *testing.T) {
	t.Setenv("VOY_TEST_K", "k")
	t.Setenv("VOY_TEST_S", "s")
	const value = "dstSecretPassw0rdXYZ"
	t.Setenv("VOY_TEST_VALUE", value)
	for _, c := range []struct{ from, to, want string }{
		{"region: bhs}", `region: "${VOY_TEST_VALUE}"}`, `region "${VOY_TEST_VALUE}"`},
		{"part_size: 16MiB", `part_size: "${VOY_TEST_VALUE}"`, `jobs[0].transfer.part_size: "${VOY_TEST_VALUE}" is not a size`},
		{"    deletes: propagate", "    deletes: propagate\n    encryption: {recipients: [\"${VOY_TEST_VALUE}\"], names: plain}", "${VOY_TEST_VALUE}"},
		{"deletes: propagate", `deletes: "x-${VOY_TEST_VALUE}"`, `"x-${VOY_TEST_VALUE}"`},
		{"concurrency: 8,", `concurrency: "${VOY_TEST_VALUE}",`, "jobs[0].transfer.concurrency"},
		{`url: "http://127.0.0.1:9001"`, `url: "ftp://${VOY_TEST_VALUE}"`, `"ftp://${VOY_TEST_VALUE}"`},
	} {
		_, err := ParseConfig([]byte(strings.Replace(goodConfig, c.from, c.to, 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), value) || strings.Contains(err.Error(), "Passw0rd") {
			t.Errorf("%s: error %v; want it to name %s and never show the value", c.to, err, c.want)
		}
	}
}

func TestConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VOY_TEST_SECRET", "from-the-environment")
	for i, c := range []struct {
		name, secret, url string
		mode              os.FileMode
		want              []string
	}{
		{"inline secret, world-readable", `"inline-secret"`, "http://127.0.0.1:9000", 0o644, []string{"secrets inline"}},
		{"inline secret, private file", `"inline-secret"`, "http://127.0.0.1:9000", 0o600, nil},
		{"secret from the environment", `"${VOY_TEST_SECRET}"`, "http://127.0.0.1:9000", 0o644, nil},
		{"plain http beyond loopback", `"${VOY_TEST_SECRET}"`, "http://minio.example.ca:9000", 0o600, []string{"plain http", "minio.example.ca"}},
		{"https", `"${VOY_TEST_SECRET}"`, "https://minio.example.ca:9000", 0o600, nil},
	} {
		path := filepath.Join(dir, fmt.Sprintf("case%d.yaml", i))
		cfg := "journal: j.db\nendpoints:\n  a: {type: minio, url: \"" + c.url + "\", access_key: k, secret_key: " + c.secret + "}\njobs:\n  - {name: x, source: a:src, destination: a:dst}\n"
		if err := os.WriteFile(path, []byte(cfg), c.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, c.mode)
		var logs bytes.Buffer
		if _, err := LoadConfig(path, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(c.want) == 0 && logs.Len() != 0 {
			t.Errorf("%s: unexpected warning %q", c.name, logs.String())
		}
		for _, w := range c.want {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("%s: warning %q lacks %q", c.name, logs.String(), w)
			}
		}
		if strings.Contains(logs.String(), "inline-secret") || strings.Contains(logs.String(), "from-the-environment") {
			t.Errorf("%s: the warning shows a secret", c.name)
		}
	}
}

func TestAzureEndpoints(t *testing.T) {
	t.Setenv("VOY_TEST_AZ_KEY", "QVpVUkVTRUNSRVRLRVk=")
	t.Setenv("VOY_TEST_AZ_SAS", "sv=2024&sig=AZSASSECRET")
	cfg := func(ep string) string {
		return "journal: j.db\nendpoints:\n  src: {type: minio, url: \"http://127.0.0.1:9000\"}\n  az: " + ep + "\njobs:\n  - {name: x, source: src:ledgers, destination: az:replica/prefix/}\n"
	}
	for _, ep := range []string{
		`{type: azure, account: fintechca, key: "${VOY_TEST_AZ_KEY}", region: canadacentral}`,
		`{type: azure, account: fintechca, sas: "${VOY_TEST_AZ_SAS}", region: canadaeast}`,
		`{type: azure, account: fintechca}`,
		`{type: azure, account: devstoreaccount1, key: "${VOY_TEST_AZ_KEY}", url: "http://127.0.0.1:10000/devstoreaccount1"}`,
	} {
		c, err := ParseConfig([]byte(cfg(ep)))
		if err != nil {
			t.Errorf("%s: %v", ep, err)
			continue
		}
		if got := c.Jobs[0].Destination; !strings.Contains(fmt.Sprint(got), "replica") {
			t.Errorf("%s: destination %+v, want container replica", ep, got)
		}
	}
	for ep, want := range map[string]string{
		`{type: azure, key: "${VOY_TEST_AZ_KEY}"}`:                                        "needs account",
		`{type: azure, account: a, key: "${VOY_TEST_AZ_KEY}", sas: "${VOY_TEST_AZ_SAS}"}`: "not both",
		`{type: azure, account: a, region: eastus}`:                                       "canadacentral",
		`{type: azure, account: a, secret_key: "${VOY_TEST_AZ_KEY}"}`:                     "not access_key",
		`{type: minio, url: "http://127.0.0.1:1", sas: "${VOY_TEST_AZ_SAS}"}`:             "for type azure",
	} {
		_, err := ParseConfig([]byte(cfg(ep)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", ep, err, want)
			continue
		}
		for _, secret := range []string{"QVpVUkVTRUNSRVRLRVk=", "AZSASSECRET"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q shows a secret", ep, err)
			}
		}
	}
	locked := strings.Replace(cfg(`{type: azure, account: a}`), "replica/prefix/}", "replica/prefix/, retention: {mode: compliance, days: 7}}", 1)
	if _, err := ParseConfig([]byte(locked)); err == nil || !strings.Contains(err.Error(), "jobs[0].retention: not supported on a type azure destination") {
		t.Errorf("retention on an azure destination: %v", err)
	}
}

// TestConfigOverlappingDestinations: two jobs may write under one
// destination prefix only while neither propagates deletes, since a rebuilt
// journal deletes the replicas under its prefix whose source key is gone.
func TestConfigOverlappingDestinations(t *testing.T) {
	t.Setenv("VOY_TEST_K", "k")
	t.Setenv("VOY_TEST_S", "s")
	job := func(name, dest, deletes string) string {
		return "  - name: " + name + "\n    source: src:fintech-ledgers/" + name + "/\n    destination: " + dest + "\n    deletes: " + deletes + "\n"
	}
	head := goodConfig[:strings.Index(goodConfig, "jobs:")] + "jobs:\n"
	for _, tc := range []struct {
		name, a, b string
		refused    bool
	}{
		{"same prefix, propagate", job("a", "dst:replica/x/", "propagate"), job("b", "dst:replica/x/", "keep"), true},
		{"nested prefix, propagate", job("a", "dst:replica/x/", "keep"), job("b", "dst:replica/x/y/", "propagate"), true},
		{"whole bucket, propagate", job("a", "dst:replica", "propagate"), job("b", "dst:replica/y/", "keep"), true},
		{"same prefix, keep", job("a", "dst:replica/x/", "keep"), job("b", "dst:replica/x/", "keep"), false},
		{"apart, propagate", job("a", "dst:replica/x/", "propagate"), job("b", "dst:replica/y/", "propagate"), false},
		{"other bucket, propagate", job("a", "dst:replica/x/", "propagate"), job("b", "dst:replica-2/x/", "propagate"), false},
		{"other endpoint, propagate", job("a", "dst:replica/x/", "propagate"), job("b", "bhs:replica/x/", "propagate"), false},
	} {
		_, err := ParseConfig([]byte(head + tc.a + tc.b))
		switch {
		case tc.refused && (err == nil || !strings.Contains(err.Error(), "overlap") || !strings.Contains(err.Error(), "jobs a and b")):
			t.Errorf("%s: %v, want the overlap refused naming both jobs", tc.name, err)
		case !tc.refused && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.name, err)
		}
	}
}
