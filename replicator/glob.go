package replicator

import (
	"fmt"
	"path"
	"strings"
)

// Filter selects keys with include and exclude globs, matched against the
// key relative to the job's source prefix. A glob is '/'-separated; "**" as
// a whole segment matches any number of segments (zero included), other
// segments use path.Match syntax (*, ?, [..]). A glob without '/' matches
// the last segment at any depth, so "*.csv" selects every CSV file.
// A key is selected when it matches some include (or there are none) and
// no exclude.
type Filter struct {
	include, exclude [][]string
}

// NewFilter compiles the globs; a malformed glob is an error naming it.
func NewFilter(include, exclude []string) (*Filter, error) {
	f := &Filter{}
	for _, set := range []struct {
		globs []string
		dst   *[][]string
	}{{include, &f.include}, {exclude, &f.exclude}} {
		for _, g := range set.globs {
			if err := ValidateGlob(g); err != nil {
				return nil, err
			}
			*set.dst = append(*set.dst, compileGlob(g))
		}
	}
	return f, nil
}

// ValidateGlob reports whether g is a well-formed glob.
func ValidateGlob(g string) error {
	if g == "" {
		return fmt.Errorf("empty glob")
	}
	for _, seg := range strings.Split(g, "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("glob %q: %w", g, err)
		}
	}
	return nil
}

func compileGlob(g string) []string {
	g = strings.TrimPrefix(g, "/")
	if !strings.Contains(g, "/") && g != "**" {
		return []string{"**", g}
	}
	return strings.Split(g, "/")
}

// Match reports whether the relative key is selected.
func (f *Filter) Match(rel string) bool {
	if f == nil {
		return true
	}
	segs := strings.Split(rel, "/")
	if len(f.include) > 0 {
		ok := false
		for _, p := range f.include {
			if matchSegs(p, segs) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, p := range f.exclude {
		if matchSegs(p, segs) {
			return false
		}
	}
	return true
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			for i := 0; i <= len(segs); i++ {
				if matchSegs(rest, segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], segs[0]); !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
