package replicator

import "testing"

func TestFilter(t *testing.T) {
	cases := []struct {
		include, exclude []string
		key              string
		want             bool
	}{
		{nil, nil, "a/b/c.csv", true},
		{[]string{"**/*.parquet"}, nil, "x.parquet", true},
		{[]string{"**/*.parquet"}, nil, "2026/11/x.parquet", true},
		{[]string{"**/*.parquet"}, nil, "2026/11/x.csv", false},
		{[]string{"*.csv"}, nil, "deep/er/ledger.csv", true},
		{[]string{"daily/*.csv"}, nil, "daily/sub/ledger.csv", false},
		{[]string{"daily/*.csv"}, nil, "daily/ledger.csv", true},
		{nil, []string{"tmp/**"}, "tmp/a/b", false},
		{nil, []string{"tmp/**"}, "tmpx/a", true},
		{nil, []string{"tmp/**"}, "a/tmp/b", true},
		{[]string{"**"}, []string{"**/*.tmp"}, "a/b.tmp", false},
		{[]string{"a/**/z"}, nil, "a/z", true},
		{[]string{"a/**/z"}, nil, "a/b/c/z", true},
		{[]string{"a/**/z"}, nil, "a/b/c/y", false},
		{[]string{"with space/*"}, nil, "with space/é+&=?.txt", true},
	}
	for _, c := range cases {
		f, err := NewFilter(c.include, c.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(c.key); got != c.want {
			t.Errorf("include %q exclude %q key %q: got %v, want %v", c.include, c.exclude, c.key, got, c.want)
		}
	}
}

func TestValidateGlob(t *testing.T) {
	for _, g := range []string{"[", "a/[b", ""} {
		if err := ValidateGlob(g); err == nil {
			t.Errorf("ValidateGlob(%q) accepted a malformed glob", g)
		}
	}
}
