package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/crypto"
)

func TestKeygen(t *testing.T) {
	for _, pq := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "identity.txt")
		var stdout, stderr bytes.Buffer
		if err := runKeygen(keygenOptions{pq: pq, output: path}, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("identity file: %v, mode %v; want 0600", err, st.Mode())
		}
		recipient := strings.TrimSpace(strings.TrimPrefix(stderr.String(), "Public key: "))
		wantPrefix := "age1"
		if pq {
			wantPrefix = "age1pq1"
		}
		if !strings.HasPrefix(recipient, wantPrefix) || stdout.Len() != 0 {
			t.Errorf("pq=%v: recipient %q, stdout %q", pq, recipient, stdout.String())
		}
		if _, err := crypto.ParseRecipient(recipient); err != nil {
			t.Errorf("printed recipient does not parse: %v", err)
		}
		ids, err := crypto.LoadIdentities(path)
		if err != nil || len(ids) != 1 {
			t.Errorf("identity file does not load: %v", err)
		}
		if strings.Contains(stderr.String(), "AGE-SECRET-KEY") {
			t.Error("the identity was printed on stderr")
		}
		// Never overwritten.
		before, _ := os.ReadFile(path)
		err = runKeygen(keygenOptions{pq: pq, output: path}, &stdout, &stderr)
		after, _ := os.ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), "exists") || !bytes.Equal(before, after) {
			t.Errorf("second keygen to the same file: %v", err)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := runKeygen(keygenOptions{}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "AGE-SECRET-KEY-1") {
		t.Errorf("keygen to stdout: %v %q", err, stdout.String())
	}
}

func TestEncryptionConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "names.key")
	os.WriteFile(secret, bytes.Repeat([]byte{1}, 32), 0o600)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("too short"), 0o600)
	var out bytes.Buffer
	if err := runKeygen(keygenOptions{}, &bytes.Buffer{}, &out); err != nil {
		t.Fatal(err)
	}
	recipient := strings.TrimSpace(strings.TrimPrefix(out.String(), "Public key: "))
	var pqOut bytes.Buffer
	if err := runKeygen(keygenOptions{pq: true}, &bytes.Buffer{}, &pqOut); err != nil {
		t.Fatal(err)
	}
	pqRecipient := strings.TrimSpace(strings.TrimPrefix(pqOut.String(), "Public key: "))
	identityFile := filepath.Join(dir, "identity.txt")
	if err := runKeygen(keygenOptions{output: identityFile}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}

	base := `journal: j.db
endpoints:
  a: {type: minio, url: "http://127.0.0.1:1"}
jobs:
  - name: x
    source: a:src
    destination: a:dst
    encryption: ENC
`
	cases := []struct{ enc, wantErr string }{
		{`{recipients: ["` + recipient + `"], name_secret_file: "` + secret + `"}`, ""},
		{`none`, ""},
		{`{recipients: ["` + recipient + `"], names: plain, compression: none}`, ""},
		{`{recipients: ["age1notakey"]}`, `line 8: jobs[0].encryption.recipients[0]: `},
		{`{recipients: ["` + recipient + `"]}`, "name_secret_file: missing"},
		{`{recipients: ["` + recipient + `"], name_secret_file: "` + secret + `", colour: red}`, `unknown field "colour" in jobs[0].encryption`},
		{`{recipients: ["` + recipient + `"], names: plain, compression: lz4}`, `compression: "lz4"`},
		{`{recipients: ["` + recipient + `"], names: plain, level: 40}`, `level: 40`},
		{`{name_secret_file: "` + secret + `"}`, "recipients: none"},
		{`sometimes`, `encryption: "sometimes"`},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(strings.Replace(base, "ENC", c.enc, 1)))
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.enc, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want %q", c.enc, err, c.wantErr)
		}
	}

	// Files are read when the job is built: their problems are config errors too.
	build := func(enc string) error {
		cfg, err := ParseConfig([]byte(strings.Replace(base, "ENC", enc, 1)))
		if err != nil {
			return err
		}
		_, err = buildEncryption(cfg.Jobs[0], true)
		return err
	}
	for enc, want := range map[string]string{
		`{recipients: ["` + recipient + `"], name_secret_file: "` + short + `"}`:                         "short.key",
		`{recipients: ["` + recipient + `"], name_secret_file: "` + filepath.Join(dir, "missing") + `"}`: "missing",
		`{recipients_file: "` + filepath.Join(dir, "nope.txt") + `", names: plain}`:                      "nope.txt",
		`{recipients: ["` + recipient + `", "` + pqRecipient + `"], names: plain}`:                       "encryption",
		`{recipients: ["` + recipient + `"], name_secret_file: "` + identityFile + `"}`:                  "is an age identity, not a name secret",
	} {
		err := build(enc)
		var ce *ConfigError
		if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a config error naming %q", enc, err, want)
		}
	}
	if err := build(`{recipients: ["` + recipient + `"], name_secret_file: "` + secret + `"}`); err != nil {
		t.Errorf("good encryption block: %v", err)
	}

	// Recipients from age's recipients file, added to the inline ones.
	var out2 bytes.Buffer
	if err := runKeygen(keygenOptions{}, &bytes.Buffer{}, &out2); err != nil {
		t.Fatal(err)
	}
	second := strings.TrimSpace(strings.TrimPrefix(out2.String(), "Public key: "))
	file := filepath.Join(dir, "recipients.txt")
	os.WriteFile(file, []byte("# treasury offline key\n"+second+"\n\n# second site\n"+recipient+"\n"), 0o644)
	cfg, err := ParseConfig([]byte(strings.Replace(base, "ENC", `{recipients: ["`+recipient+`"], recipients_file: "`+file+`", names: plain}`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := buildEncryption(cfg.Jobs[0], true)
	if err != nil || len(enc.Options.Recipients) != 3 {
		t.Errorf("inline plus file recipients: %v, %d recipients", err, len(enc.Options.Recipients))
	}
}
