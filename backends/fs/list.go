package fs

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/voyageur-ca/voyageur/backends"
)

// List yields the objects under opts.Prefix in ascending byte order of their
// keys.
//
// A directory walk in name order is not key order ("a.b" < "a/b" because
// '.' < '/'), so each directory's entries are sorted with a '/' appended to
// subdirectory names: every key under subdirectory d starts with "d/", and a
// file name never contains '/', so this order of entries is the order of the
// keys beneath them. Only the directories on the path to the current entry
// are held in memory, and subtrees that cannot hold a key matching the
// prefix or following StartAfter are never read.
func (b *Bucket) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		w := walker{b: b, ctx: ctx, prefix: opts.Prefix, yield: yield, versions: opts.Versions}
		if !opts.Versions {
			w.startAfter = opts.StartAfter
		}
		// Start at the deepest directory the prefix names. A prefix whose
		// directory part is not a valid key path matches no key.
		dir := opts.Prefix[:strings.LastIndexByte(opts.Prefix, '/')+1]
		if dir != "" && checkKey(strings.TrimSuffix(dir, "/")) != nil {
			return
		}
		w.walk(dir)
	}
}

type walker struct {
	b          *Bucket
	ctx        context.Context
	prefix     string
	startAfter string
	versions   bool
	yield      func(backends.ObjectInfo, error) bool
}

type entry struct {
	name  string
	sort  string // name, plus '/' for a directory
	isDir bool
}

// walk lists the directory whose keys start with dir ("" for the root, else
// ending in '/'). It returns false once iteration must stop.
func (w *walker) walk(dir string) bool {
	if err := w.ctx.Err(); err != nil {
		return w.fail(err)
	}
	entries, err := w.readDir(dir)
	if err != nil {
		return w.fail(err)
	}
	for _, e := range entries {
		k := dir + e.sort
		if e.isDir {
			if !strings.HasPrefix(k, w.prefix) && !strings.HasPrefix(w.prefix, k) {
				continue
			}
			// Every key below starts with k: skip the subtree when all of
			// them sort before StartAfter.
			if w.startAfter > k && !strings.HasPrefix(w.startAfter, k) {
				continue
			}
			if !w.walk(k) {
				return false
			}
			continue
		}
		if !strings.HasPrefix(k, w.prefix) || k <= w.startAfter {
			continue
		}
		if err := w.ctx.Err(); err != nil {
			return w.fail(err)
		}
		oi, ok, err := w.object(k)
		if err != nil {
			return w.fail(err)
		}
		if !ok {
			continue // removed since the directory was read
		}
		if !w.yield(oi, nil) {
			return false
		}
	}
	return true
}

// readDir returns the relevant entries of dir sorted by key order. A
// missing directory has no entries.
func (w *walker) readDir(dir string) ([]entry, error) {
	name := "."
	if dir != "" {
		name = osPath(strings.TrimSuffix(dir, "/"))
	}
	f, err := w.b.root.Open(name)
	if err != nil {
		if notExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if err != nil {
		if notExist(err) {
			return nil, nil
		}
		return nil, err
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if dir == "" && name == hiddenDir {
			continue
		}
		switch t := de.Type(); {
		case t.IsDir():
			entries = append(entries, entry{name: name, sort: name + "/", isDir: true})
		case t.IsRegular():
			entries = append(entries, entry{name: name, sort: name})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.sort, b.sort) })
	return entries, nil
}

// object returns the listing info of key; ok is false when the file is gone.
func (w *walker) object(key string) (backends.ObjectInfo, bool, error) {
	f, err := w.b.root.Open(osPath(key))
	if err != nil {
		if notExist(err) {
			return backends.ObjectInfo{}, false, nil
		}
		return backends.ObjectInfo{}, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return backends.ObjectInfo{}, false, err
	}
	if !fi.Mode().IsRegular() {
		return backends.ObjectInfo{}, false, nil
	}
	oi, err := w.b.info(w.ctx, key, f, fi, false)
	if err != nil {
		return backends.ObjectInfo{}, false, err
	}
	oi.IsLatest = w.versions
	return oi, true, nil
}

func (w *walker) fail(err error) bool {
	w.yield(backends.ObjectInfo{}, fmt.Errorf("list %s (prefix %q): %w", w.b.Name(), w.prefix, err))
	return false
}
