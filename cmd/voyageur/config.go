package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
)

// Config is the YAML configuration file. See docs/config.md.
type Config struct {
	Journal   string              `yaml:"journal"`
	Endpoints map[string]Endpoint `yaml:"endpoints"`
	Jobs      []JobConfig         `yaml:"jobs"`
	Serve     ServeConfig         `yaml:"serve"` // voyageur serve (serve.go)
}

// Endpoint is one object store account.
type Endpoint struct {
	Type      string `yaml:"type"` // aws | s3 | minio | ovh | fs | azure
	Region    string `yaml:"region"`
	URL       string `yaml:"url"`
	PathStyle bool   `yaml:"path_style"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	CAFile    string `yaml:"ca_file"`
	Path      string `yaml:"path"` // type fs: the directory holding the buckets
	// Type azure: the storage account and one of its shared key or a SAS
	// (neither: the Azure default credential chain). Buckets are
	// containers.
	Account string `yaml:"account"`
	Key     string `yaml:"key"`
	SAS     string `yaml:"sas"`

	Timeouts EndpointTimeouts `yaml:"timeouts"`
	// Location declares where a store no provider preset knows is (a
	// self-hosted MinIO); see drill.go.
	Location *EndpointLocation `yaml:"location"`

	line int
}

// EndpointTimeouts is an endpoint's `timeouts:` block; a field left out
// takes its default (see backends.Timeouts).
type EndpointTimeouts struct {
	Connect  Duration `yaml:"connect"`  // dial and TLS handshake
	Response Duration `yaml:"response"` // from request sent to response headers
	Idle     Duration `yaml:"idle"`     // a read or write that moves no byte
}

// Timeout bounds: below a second, ordinary latency would fail requests;
// beyond an hour, a stall is a hang.
const (
	minTimeout = time.Second
	maxTimeout = time.Hour
)

// JobConfig is one replication job.
type JobConfig struct {
	Name        string         `yaml:"name"`
	Source      Location       `yaml:"source"`
	Destination Location       `yaml:"destination"`
	Include     []string       `yaml:"include"`
	Exclude     []string       `yaml:"exclude"`
	Encryption  Encryption     `yaml:"encryption"`
	Deletes     string         `yaml:"deletes"`
	MaxDelete   string         `yaml:"max_delete"`
	Transfer    TransferConfig `yaml:"transfer"`
	Retention   *Retention     `yaml:"retention"`
	Events      []EventConfig  `yaml:"events"`
	Rescan      Duration       `yaml:"rescan"`
	// Residency and Objectives are checked by drill (and residency by sync
	// and watch too); see drill.go.
	Residency  string            `yaml:"residency"`
	Objectives *ObjectivesConfig `yaml:"objectives"`

	line int
}

// Encryption is a job's `encryption:` block, or the scalar `none`.
type Encryption struct {
	None           bool     `yaml:"-"`
	Recipients     []string `yaml:"recipients"`
	RecipientsFile string   `yaml:"recipients_file"`
	Compression    string   `yaml:"compression"` // zstd (default) | none
	Level          int      `yaml:"level"`       // zstd level 1..19, default 3
	Names          string   `yaml:"names"`       // hashed (default) | plain
	NameSecretFile string   `yaml:"name_secret_file"`

	line int
}

// encryptionFields is Encryption without its UnmarshalYAML, to decode the
// mapping form.
type encryptionFields Encryption

// UnmarshalYAML takes `none`, or a mapping (whose fields checkFields
// checked).
func (e *Encryption) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "none" {
			return fmt.Errorf("%q (use none, or a mapping with recipients)", n.Value)
		}
		*e = Encryption{None: true, line: n.Line}
		return nil
	}
	var f encryptionFields
	if err := n.Decode(&f); err != nil {
		return err
	}
	*e = Encryption(f)
	e.line = n.Line
	return nil
}

// Enabled reports whether the job encrypts.
func (e *Encryption) Enabled() bool { return !e.None && e.line != 0 }

// Retention is a job's `retention:` block: object-lock retention of every
// replica written.
type Retention struct {
	Mode string `yaml:"mode"` // governance | compliance
	Days int    `yaml:"days"`

	line int
}

// retentionFields is Retention without its UnmarshalYAML.
type retentionFields Retention

// UnmarshalYAML keeps the line (checkFields checked the fields).
func (r *Retention) UnmarshalYAML(n *yaml.Node) error {
	var f retentionFields
	if err := n.Decode(&f); err != nil {
		return err
	}
	*r = Retention(f)
	r.line = n.Line
	return nil
}

// maxRetentionDays bounds retention.days: a longer lock is more likely a
// typo than a policy, and cannot be undone in compliance mode.
const maxRetentionDays = 100 * 365

// validate checks the retention block; errors start with the field name.
func (r *Retention) validate() error {
	switch r.Mode {
	case "governance", "compliance":
	case "":
		return errors.New("mode: missing (governance or compliance)")
	default:
		return fmt.Errorf("mode: %q (use governance or compliance)", r.Mode)
	}
	if r.Days < 1 || r.Days > maxRetentionDays {
		return fmt.Errorf("days: %d is outside 1..%d", r.Days, maxRetentionDays)
	}
	return nil
}

// EventConfig is one event source of `voyageur watch`: exactly one of
// listen, sqs and webhook.
type EventConfig struct {
	Listen  bool   `yaml:"listen"`  // MinIO ListenBucketNotification on the source
	SQS     string `yaml:"sqs"`     // queue URL receiving S3 event notifications
	URL     string `yaml:"url"`     // SQS endpoint override (an emulator, a VPC endpoint)
	Region  string `yaml:"region"`  // SQS region (default: the source endpoint's, or us-east-1)
	Webhook string `yaml:"webhook"` // HOST:PORT to receive S3 event records over HTTP
	Token   string `yaml:"token"`   // bearer token the webhook requires
}

// Duration is a time span written as 90s, 15m, 1h or 1h30m.
type Duration time.Duration

// UnmarshalYAML parses the duration; checkFields adds the field and line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (examples: 90s, 15m, 1h)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// TransferConfig tunes the copy engine.
type TransferConfig struct {
	PartSize    Size `yaml:"part_size"`
	Concurrency int  `yaml:"concurrency"`
	Memory      Size `yaml:"memory"`
	// Bandwidth is bytes per second sent to the destination (restore: read
	// from the replica); ReadBandwidth bytes per second read from the
	// source. 0 = unlimited.
	Bandwidth     Size `yaml:"bandwidth"`
	ReadBandwidth Size `yaml:"read_bandwidth"`
}

// Location is "ENDPOINT:BUCKET[/PREFIX]".
type Location struct {
	Endpoint, Bucket, Prefix string
	line                     int
}

func (l Location) String() string {
	if l.Prefix == "" {
		return l.Endpoint + ":" + l.Bucket
	}
	return l.Endpoint + ":" + l.Bucket + "/" + l.Prefix
}

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$`)

// ParseLocation parses "ENDPOINT:BUCKET[/PREFIX]".
func ParseLocation(s string) (Location, error) {
	ep, rest, ok := strings.Cut(s, ":")
	if !ok || ep == "" || rest == "" {
		return Location{}, fmt.Errorf("%q is not ENDPOINT:BUCKET[/PREFIX]", s)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if !bucketName.MatchString(bucket) {
		return Location{}, fmt.Errorf("%q: %q is not a valid bucket name", s, bucket)
	}
	return Location{Endpoint: ep, Bucket: bucket, Prefix: prefix}, nil
}

// UnmarshalYAML parses the location and keeps its line for later errors;
// checkFields adds the field and line to an error.
func (l *Location) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("expected ENDPOINT:BUCKET[/PREFIX]")
	}
	loc, err := ParseLocation(n.Value)
	if err != nil {
		return err
	}
	loc.line = n.Line
	*l = loc
	return nil
}

// Size is a byte count written as 1048576, 5MiB, 16MB, 1.5GiB or 50MB/s.
type Size int64

var sizeRE = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*(?:/s)?\s*$`)

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize parses a size; units are case-insensitive, K/M/G/T and KiB.. are
// powers of 1024, KB/MB/GB/TB powers of 1000.
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (examples: 1048576, 5MiB, 16MB)", s)
	}
	mult, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s, m[2])
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return Size(v * mult), nil
}

// UnmarshalYAML parses the size; checkFields adds the field and line.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ConfigError is a problem with the configuration or the command line;
// the CLI exits 2 for it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Errorf(format, args...)}
}

// LoadConfig reads, expands and validates the configuration file, and logs
// what deserves a warning: inline secrets in a file others can read, plain
// http to a host beyond loopback.
func LoadConfig(path string, log *slog.Logger) (*Config, error) {
	return loadConfig(path, log, false)
}

// LoadConfigWithoutSecrets is LoadConfig for commands that contact no store
// (status): an unset ${VAR} in access_key, secret_key or token is left as
// written instead of failing, so that an operator's shell without the
// service's secrets can still read the journal.
func LoadConfigWithoutSecrets(path string, log *slog.Logger) (*Config, error) {
	return loadConfig(path, log, true)
}

func loadConfig(path string, log *slog.Logger, secretsOptional bool) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, configErrorf("read config: %w", err)
	}
	cfg, err := parseConfig(raw, secretsOptional)
	if err != nil {
		return nil, configErrorf("config %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 && inlineSecrets(raw) {
		log.Warn("the config file holds secrets inline and others can read it: chmod 600 it, or use ${VAR}", "config", path, "mode", st.Mode().Perm().String())
	}
	for _, name := range sortedKeys(cfg.Endpoints) {
		if host, ok := plainRemote(cfg.Endpoints[name].URL); ok {
			log.Warn("endpoint uses plain http to a host beyond loopback: requests and data travel unencrypted", "endpoint", name, "host", host)
		}
	}
	return cfg, nil
}

// inlineSecretFields are the fields inlineSecrets looks at.
var inlineSecretFields = map[string]bool{"secret_key": true, "key": true, "sas": true}

// inlineSecrets reports whether some secret_key (or an Azure key or SAS) is
// written in the file rather than taken from the environment.
func inlineSecrets(raw []byte) bool {
	var root yaml.Node
	if yaml.Unmarshal(raw, &root) != nil {
		return false
	}
	var walk func(n *yaml.Node) bool
	walk = func(n *yaml.Node) bool {
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 1 && inlineSecretFields[n.Content[i-1].Value] &&
				c.Value != "" && !envRef.MatchString(c.Value) {
				return true
			}
			if walk(c) {
				return true
			}
		}
		return false
	}
	return walk(&root)
}

// plainRemote reports whether url is plain http to a host that is not a
// loopback address (or localhost), and returns that host.
func plainRemote(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return "", false
	}
	host := u.Hostname()
	if host == "localhost" {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return "", false
	}
	return host, true
}

// ParseConfig decodes YAML strictly: unknown fields, bad sizes, unset
// ${VARS}, unknown endpoints and malformed locations are errors that name
// the field and its line.
func ParseConfig(raw []byte) (*Config, error) { return parseConfig(raw, false) }

// secretFields are the fields whose unset ${VAR} LoadConfigWithoutSecrets
// tolerates.
var secretFields = map[string]bool{"access_key": true, "secret_key": true, "token": true, "key": true, "sas": true}

func parseConfig(raw []byte, secretsOptional bool) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, cleanYAMLError(err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("the file is empty")
	}
	doc := root.Content[0]
	written := map[string]string{}
	if err := expandEnv(doc, secretsOptional, "", "", written); err != nil {
		return nil, err
	}
	// From here on, an error may quote a value expanded from ${VAR}.
	if err := checkFields(doc, reflect.TypeFor[Config](), ""); err != nil {
		return nil, redact(err, written)
	}
	var cfg Config
	if err := doc.Decode(&cfg); err != nil {
		return nil, redact(cleanYAMLError(err), written)
	}
	recordLines(doc, &cfg)
	if err := cfg.validate(); err != nil {
		return nil, redact(err, written)
	}
	return &cfg, nil
}

// redact replaces, in a configuration error, every value expanded from
// ${VAR} by the text written in the file: an error names the field and
// the variable, never what the environment holds (a secret pasted in the
// wrong variable, a region that is a password). Short values are replaced
// only where quoted, so that "line 1" stays readable.
func redact(err error, written map[string]string) error {
	msg := err.Error()
	values := sortedKeys(written)
	// Longest first: a value inside another is replaced after it.
	sort.SliceStable(values, func(a, b int) bool { return len(values[a]) > len(values[b]) })
	for _, v := range values {
		msg = strings.ReplaceAll(msg, strconv.Quote(v), strconv.Quote(written[v]))
		if len(v) >= minRedacted {
			msg = strings.ReplaceAll(msg, v, written[v])
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// minRedacted is the shortest expanded value redact replaces unquoted.
const minRedacted = 4

func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	return errors.New(msg)
}

// lineRE is the "line N: " yaml starts its decode errors with.
var lineRE = regexp.MustCompile(`^line \d+: `)

// checkFields walks the document and rejects mapping keys that have no
// matching yaml tag and values that do not decode into their field (a
// size, a duration, a number), naming the field path and line.
func checkFields(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	// The blocks with their own UnmarshalYAML: the mapping form is checked
	// like any struct.
	switch {
	case t == reflect.TypeFor[Encryption]() && n.Kind == yaml.MappingNode:
		t = reflect.TypeFor[encryptionFields]()
	case t == reflect.TypeFor[Retention]():
		t = reflect.TypeFor[retentionFields]()
	}
	_, custom := reflect.PointerTo(t).MethodByName("UnmarshalYAML")
	if custom || n.Kind == yaml.ScalarNode {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			msg := lineRE.ReplaceAllString(cleanYAMLError(err).Error(), "")
			switch t.Kind() {
			case reflect.Int:
				msg = fmt.Sprintf("%q is not a whole number", n.Value)
			case reflect.Bool:
				msg = fmt.Sprintf("%q is not true or false", n.Value)
			}
			return fmt.Errorf("line %d: %s: %s", n.Line, orRoot(path), msg)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: expected a mapping", n.Line, orRoot(path))
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
				fields[tag] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown field %q in %s (known: %s)", k.Line, k.Value, orRoot(path), strings.Join(sortedKeys(fields), ", "))
			}
			if err := checkFields(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: expected a mapping", n.Line, orRoot(path))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkFields(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: expected a list", n.Line, orRoot(path))
		}
		for i, c := range n.Content {
			if err := checkFields(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func orRoot(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in scalar values (never in keys). An unset
// variable is an error, except in a secret field (field names the value's
// key, path its place) when secretsOptional, where the reference stays as
// written; the error never shows values. written maps each expanded
// value to the text the file holds, for redact.
func expandEnv(n *yaml.Node, secretsOptional bool, field, path string, written map[string]string) error {
	if n.Kind == yaml.ScalarNode {
		var missing string
		raw := n.Value
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := ref[2 : len(ref)-1]
			v, ok := os.LookupEnv(name)
			if !ok && secretsOptional && secretFields[field] {
				return ref
			}
			if !ok && missing == "" {
				missing = name
			}
			return v
		})
		if missing != "" {
			return fmt.Errorf("line %d: %s: environment variable %s is not set", n.Line, orRoot(path), missing)
		}
		if n.Value != raw && n.Value != "" {
			written[n.Value] = raw
		}
		return nil
	}
	for i, c := range n.Content {
		key, sub := "", path
		switch n.Kind {
		case yaml.MappingNode:
			if i%2 == 0 {
				continue
			}
			key = n.Content[i-1].Value
			sub = join(path, key)
		case yaml.SequenceNode:
			sub = fmt.Sprintf("%s[%d]", path, i)
		}
		if err := expandEnv(c, secretsOptional, key, sub, written); err != nil {
			return err
		}
	}
	return nil
}

// recordLines keeps the line of each endpoint and job for later errors.
func recordLines(doc *yaml.Node, cfg *Config) {
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		switch k.Value {
		case "endpoints":
			for j := 0; j+1 < len(v.Content); j += 2 {
				name := v.Content[j].Value
				if ep, ok := cfg.Endpoints[name]; ok {
					ep.line = v.Content[j].Line
					cfg.Endpoints[name] = ep
				}
			}
		case "jobs":
			for j, c := range v.Content {
				if j < len(cfg.Jobs) {
					cfg.Jobs[j].line = c.Line
				}
			}
		}
	}
}

func (c *Config) validate() error {
	if c.Journal == "" {
		return errors.New("journal: missing (path of the journal file)")
	}
	if len(c.Endpoints) == 0 {
		return errors.New("endpoints: none defined")
	}
	for _, name := range sortedKeys(c.Endpoints) {
		ep := c.Endpoints[name]
		if err := ep.validate(); err != nil {
			return fmt.Errorf("line %d: endpoints.%s: %w", ep.line, name, err)
		}
	}
	if len(c.Jobs) == 0 {
		return errors.New("jobs: none defined")
	}
	seen := map[string]bool{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		field := fmt.Sprintf("jobs[%d]", i)
		if j.Name == "" {
			return fmt.Errorf("line %d: %s.name: missing", j.line, field)
		}
		if seen[j.Name] {
			return fmt.Errorf("line %d: %s.name: duplicate job name %q", j.line, field, j.Name)
		}
		seen[j.Name] = true
		if err := j.validate(c, field); err != nil {
			return err
		}
	}
	return c.checkOverlaps()
}

// checkOverlaps refuses two jobs whose destinations overlap when one of
// them propagates deletes: its journal, once rebuilt, takes every replica
// under its destination prefix whose source key is gone for one of its
// own, and would delete the other job's.
func (c *Config) checkOverlaps() error {
	for i, a := range c.Jobs {
		for _, b := range c.Jobs[i+1:] {
			da, db := a.Destination, b.Destination
			if da.Endpoint != db.Endpoint || da.Bucket != db.Bucket ||
				!(strings.HasPrefix(da.Prefix, db.Prefix) || strings.HasPrefix(db.Prefix, da.Prefix)) {
				continue
			}
			for _, j := range []JobConfig{a, b} {
				if j.Deletes == "propagate" {
					return fmt.Errorf("line %d: jobs %s and %s: destinations %s and %s overlap, and %s propagates deletes: "+
						"its rebuilt journal would take the other job's replicas for ones whose source is gone; give each job a destination prefix of its own",
						b.line, a.Name, b.Name, da, db, j.Name)
				}
			}
		}
	}
	return nil
}

func (ep *Endpoint) validate() error {
	switch ep.Type {
	case "aws", "s3":
		if ep.Type == "s3" && ep.URL == "" {
			return errors.New("type s3 needs url")
		}
	case "minio":
		if ep.URL == "" {
			return errors.New("type minio needs url")
		}
	case "ovh":
		if ep.Region != "bhs" && ep.Region != "ca-east-tor" {
			return fmt.Errorf("region %q: type ovh takes region bhs (Beauharnois) or ca-east-tor (Toronto)", ep.Region)
		}
	case "fs":
		if ep.Path == "" {
			return errors.New("type fs needs path")
		}
	case "azure":
		if ep.Account == "" {
			return errors.New("type azure needs account (the storage account name)")
		}
		if ep.Key != "" && ep.SAS != "" {
			return errors.New("type azure takes key or sas, not both (neither: the Azure default credential chain)")
		}
		switch ep.Region {
		case "", "canadacentral", "canadaeast":
		default:
			// The region is informational (the account's endpoint does not
			// depend on it): only the Canadian ones have presets.
			return fmt.Errorf("region %q: type azure takes region canadacentral (Toronto) or canadaeast (Québec City), or none", ep.Region)
		}
		if ep.AccessKey != "" || ep.SecretKey != "" || ep.PathStyle {
			return errors.New("type azure takes account with key or sas, not access_key, secret_key or path_style")
		}
	case "":
		return errors.New("type: missing (aws, s3, minio, ovh, fs or azure)")
	default:
		return fmt.Errorf("type %q: unknown (aws, s3, minio, ovh, fs or azure)", ep.Type)
	}
	if ep.Type != "azure" && (ep.Account != "" || ep.Key != "" || ep.SAS != "") {
		return fmt.Errorf("account, key and sas are for type azure, not type %s", ep.Type)
	}
	if ep.URL != "" && !strings.HasPrefix(ep.URL, "http://") && !strings.HasPrefix(ep.URL, "https://") {
		return fmt.Errorf("url %q: must start with http:// or https://", ep.URL)
	}
	if (ep.AccessKey == "") != (ep.SecretKey == "") {
		return errors.New("access_key and secret_key go together")
	}
	if err := ep.Location.validate(); err != nil {
		return err
	}
	for _, t := range []struct {
		name string
		d    Duration
	}{{"connect", ep.Timeouts.Connect}, {"response", ep.Timeouts.Response}, {"idle", ep.Timeouts.Idle}} {
		if d := time.Duration(t.d); d != 0 && (d < minTimeout || d > maxTimeout) {
			return fmt.Errorf("timeouts.%s: %s is not between %s and %s", t.name, d, minTimeout, maxTimeout)
		}
	}
	return nil
}

func (j *JobConfig) validate(c *Config, field string) error {
	for _, loc := range []struct {
		name string
		l    *Location
	}{{"source", &j.Source}, {"destination", &j.Destination}} {
		if loc.l.Endpoint == "" {
			return fmt.Errorf("line %d: %s.%s: missing (ENDPOINT:BUCKET[/PREFIX])", j.line, field, loc.name)
		}
		if _, ok := c.Endpoints[loc.l.Endpoint]; !ok {
			return fmt.Errorf("line %d: %s.%s: unknown endpoint %q (defined: %s)", loc.l.line, field, loc.name, loc.l.Endpoint, strings.Join(sortedKeys(c.Endpoints), ", "))
		}
	}
	if j.Source == j.Destination {
		return fmt.Errorf("line %d: %s: source and destination are the same place", j.line, field)
	}
	for _, g := range append(append([]string{}, j.Include...), j.Exclude...) {
		if err := replicator.ValidateGlob(g); err != nil {
			return fmt.Errorf("line %d: %s: %w", j.line, field, err)
		}
	}
	if err := j.Encryption.validate(); err != nil {
		return fmt.Errorf("line %d: %s.encryption.%w", j.Encryption.line, field, err)
	}
	switch j.Deletes {
	case "", "keep", "propagate":
	default:
		return fmt.Errorf("line %d: %s.deletes: %q (use keep or propagate)", j.line, field, j.Deletes)
	}
	if j.Retention != nil {
		if err := j.Retention.validate(); err != nil {
			return fmt.Errorf("line %d: %s.retention.%w", j.Retention.line, field, err)
		}
		// No Azure container can ever take it (see backends/azure).
		if c.Endpoints[j.Destination.Endpoint].Type == "azure" {
			return fmt.Errorf("line %d: %s.retention: not supported on a type azure destination (azure immutability policies are not mapped to s3 object lock)", j.Retention.line, field)
		}
	}
	for i, ev := range j.Events {
		if err := ev.validate(c.Endpoints[j.Source.Endpoint]); err != nil {
			return fmt.Errorf("line %d: %s.events[%d]: %w", j.line, field, i, err)
		}
	}
	if j.Rescan != 0 && time.Duration(j.Rescan) < time.Minute {
		return fmt.Errorf("line %d: %s.rescan: %s is shorter than a minute", j.line, field, time.Duration(j.Rescan))
	}
	if err := j.validateDrill(c, field); err != nil {
		return err
	}
	if j.MaxDelete != "" {
		if _, _, err := parseMaxDelete(j.MaxDelete); err != nil {
			return fmt.Errorf("line %d: %s.max_delete: %w", j.line, field, err)
		}
	}
	// The replicator owns the defaults and the limits; the config names the
	// field and the line.
	t := &j.Transfer
	rt := replicator.Transfer{PartSize: int64(t.PartSize), Concurrency: t.Concurrency, Memory: int64(t.Memory), Bandwidth: int64(t.Bandwidth), ReadBandwidth: int64(t.ReadBandwidth)}
	if err := rt.Normalize(j.Encryption.Enabled()); err != nil {
		return fmt.Errorf("line %d: %s.transfer.%w", j.line, field, err)
	}
	t.PartSize, t.Concurrency, t.Memory = Size(rt.PartSize), rt.Concurrency, Size(rt.Memory)
	return nil
}

// validate checks the encryption block; errors start with the field name.
// Recipients are parsed here, so a bad one is a configuration error.
func (e *Encryption) validate() error {
	if !e.Enabled() {
		return nil
	}
	if len(e.Recipients) == 0 && e.RecipientsFile == "" {
		return errors.New("recipients: none (give recipients, recipients_file or both)")
	}
	for i, r := range e.Recipients {
		if _, err := crypto.ParseRecipient(r); err != nil {
			return fmt.Errorf("recipients[%d]: %w", i, err)
		}
	}
	switch e.Compression {
	case "":
		e.Compression = "zstd"
	case "zstd", "none":
	default:
		return fmt.Errorf("compression: %q (use zstd or none)", e.Compression)
	}
	if e.Level < 0 || e.Level > 19 || (e.Level != 0 && e.Compression == "none") {
		return fmt.Errorf("level: %d (zstd levels are 1..19, and only with compression: zstd)", e.Level)
	}
	switch e.Names {
	case "":
		e.Names = "hashed"
	case "hashed", "plain":
	default:
		return fmt.Errorf("names: %q (use hashed or plain)", e.Names)
	}
	if e.Names == "hashed" && e.NameSecretFile == "" {
		return errors.New("name_secret_file: missing (names: hashed, the default, needs a file of at least 32 random bytes; or set names: plain)")
	}
	return nil
}

func (ev *EventConfig) validate(source Endpoint) error {
	n := 0
	for _, set := range []bool{ev.Listen, ev.SQS != "", ev.Webhook != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of listen: true, sqs: QUEUE_URL, webhook: HOST:PORT")
	}
	switch {
	case ev.Listen && source.Type != "minio":
		return fmt.Errorf("listen needs a MinIO source (type: minio), not type %s: use sqs or webhook", source.Type)
	case ev.SQS != "" && !strings.HasPrefix(ev.SQS, "https://") && !strings.HasPrefix(ev.SQS, "http://"):
		return fmt.Errorf("sqs: %q is not a queue URL", ev.SQS)
	case ev.Webhook != "":
		if _, _, err := net.SplitHostPort(ev.Webhook); err != nil {
			return fmt.Errorf("webhook: %q is not HOST:PORT", ev.Webhook)
		}
	}
	if ev.Token != "" && ev.Webhook == "" {
		return errors.New("token goes with webhook")
	}
	if (ev.URL != "" || ev.Region != "") && ev.SQS == "" {
		return errors.New("url and region go with sqs")
	}
	return nil
}

// parseMaxDelete reads "N" (objects) or "P%" (share of the replica).
func parseMaxDelete(s string) (count int, percent float64, err error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v > 100 {
			return 0, 0, fmt.Errorf("%q is not a percentage between 0%% and 100%%", s)
		}
		return -1, v, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, 0, fmt.Errorf("%q is not a count of objects or a percentage like 10%%", s)
	}
	return n, 0, nil
}
