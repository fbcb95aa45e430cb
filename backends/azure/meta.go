package azure

import (
	"fmt"
	"strings"
)

// Azure metadata names must be C# identifiers (letters, digits and '_', not
// starting with a digit) and are case-insensitive; S3 user metadata names
// are any lower-case token ("voyageur-fp", "x.y"). A name that is already an
// identifier is stored as it is; any other is stored as encPrefix followed
// by the name with '_' written "__" and every byte outside [a-z0-9] written
// "_HH" (two lower-case hex digits): "voyageur-fp" is stored as
// "vx_voyageur_2dfp". A name that itself starts with encPrefix is encoded
// too, so decoding is exact. Names starting with encPrefix that no encoding
// produces are reserved for the backend (etagMeta).
const encPrefix = "vx_"

// etagMeta holds the S3-style ETag of a blob assembled from staged blocks
// (see the package comment). No encoded name equals it: "etag" is an
// identifier and is stored as it is.
const etagMeta = "vx_etag"

// encodeName maps an S3 metadata name (lower-cased) to an Azure one.
func encodeName(name string) string {
	name = strings.ToLower(name)
	if isIdentifier(name) && !strings.HasPrefix(name, encPrefix) {
		return name
	}
	var b strings.Builder
	b.WriteString(encPrefix)
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '_':
			b.WriteString("__")
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}

// decodeName reverses encodeName; ok is false for a reserved name.
func decodeName(name string) (string, bool) {
	name = strings.ToLower(name)
	if !strings.HasPrefix(name, encPrefix) {
		return name, true
	}
	s := name[len(encPrefix):]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '_' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '_':
			b.WriteByte('_')
			i++
		case i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			var c byte
			fmt.Sscanf(s[i+1:i+3], "%02x", &c)
			b.WriteByte(c)
			i += 2
		default:
			return "", false
		}
	}
	out := b.String()
	// Only names that needed the encoding decode from it.
	if out == "" || encodeName(out) != name {
		return "", false
	}
	return out, true
}

func isIdentifier(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// encodeMetadata returns S3 user metadata as Azure metadata.
func encodeMetadata(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[encodeName(k)] = &v
	}
	return out
}

// decodeMetadata returns Azure metadata as S3 user metadata, without the
// reserved names, or nil when empty.
func decodeMetadata(m map[string]*string) map[string]string {
	var out map[string]string
	for k, v := range m {
		name, ok := decodeName(k)
		if !ok || v == nil {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = *v
	}
	return out
}

// metaValue looks up a name case-insensitively, as Azure compares them.
func metaValue(m map[string]*string, name string) string {
	for k, v := range m {
		if strings.EqualFold(k, name) && v != nil {
			return *v
		}
	}
	return ""
}
