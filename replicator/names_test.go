package replicator

import (
	"testing"

	"github.com/voyageur-ca/voyageur/crypto"
)

// TestMarkerNames: in an encrypted job with plain names, folder markers
// get a name that is no key ending in "/", no two keys share a name, and
// every name maps back to its key; plain jobs keep keys as they are.
func TestMarkerNames(t *testing.T) {
	enc := &Job{Encryption: &Encryption{Options: crypto.Options{}}}
	keys := []string{"", "a/", "a/b", "a/.voyageur-folder", "a/.voyageur-folder.voyageur-folder", "a/.voyageur-folderx", ".voyageur-folder", "a//", "x.voyageur-folder"}
	seen := map[string]string{}
	for _, k := range keys {
		name := enc.plainName(k)
		if other, dup := seen[name]; dup {
			t.Errorf("%q and %q share the replica name %q", k, other, name)
		}
		seen[name] = k
		if name == "" || name[len(name)-1] == '/' {
			t.Errorf("%q: replica name %q is a folder", k, name)
		}
		if back := enc.PlainKey(name); back != k {
			t.Errorf("%q → %q → %q", k, name, back)
		}
	}
	if got := enc.plainName("folder/"); got != "folder/.voyageur-folder" {
		t.Errorf("folder/ → %q", got)
	}
	plain := &Job{}
	for _, k := range keys {
		if plain.plainName(k) != k || plain.PlainKey(k) != k {
			t.Errorf("plain job renamed %q", k)
		}
	}
}
