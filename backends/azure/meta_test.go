package azure

import "testing"

func TestMetadataNames(t *testing.T) {
	for in, want := range map[string]string{
		"owner":        "owner",
		"Owner-ID":     "vx_owner_2did",
		"voyageur-fp":  "vx_voyageur_2dfp",
		"a_b":          "a_b",
		"vx_etag":      "vx_vx__etag",
		"1st":          "vx_1st",
		"x.y z":        "vx_x_2ey_20z",
		"under_score-": "vx_under__score_2d",
	} {
		got := encodeName(in)
		if got != want {
			t.Errorf("encodeName(%q) = %q, want %q", in, got, want)
		}
		if !isIdentifier(got) {
			t.Errorf("encodeName(%q) = %q is not a C# identifier", in, got)
		}
		back, ok := decodeName(got)
		if lower := encodeName(in); !ok || encodeName(back) != lower {
			t.Errorf("decodeName(%q) = %q, %v; want the name back", got, back, ok)
		}
	}
	for _, reserved := range []string{etagMeta, "vx_", "vx_bad_zz", "vx_owner"} {
		if name, ok := decodeName(reserved); ok {
			t.Errorf("decodeName(%q) = %q, want it reserved", reserved, name)
		}
	}
}
