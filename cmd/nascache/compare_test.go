package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nascache/nascache/backend/local"
)

// openLocal opens dir as a backend/local origin.
func openLocal(t *testing.T, dir string) *local.Origin {
	t.Helper()
	o, err := local.New(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o
}

func TestCompareTreeMatches(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	sum, err := makeSampleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := compareTree(t.Context(), dir, openLocal(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mismatches) != 0 {
		t.Errorf("mismatches comparing a tree with itself:\n%s", strings.Join(rep.Mismatches, "\n"))
	}
	if rep.Files != sum.Files+sum.HardLinks || rep.Symlinks != sum.Symlinks || rep.Dirs != sum.Dirs+1 || rep.Bytes == 0 {
		t.Errorf("report %+v does not cover the tree %+v", rep, sum)
	}
}

// TestCompareTreeFindsDifferences changes a copy of the tree in every way
// the self-check must notice and compares the original against it.
func TestCompareTreeFindsDifferences(t *testing.T) {
	want, got := filepath.Join(t.TempDir(), "want"), filepath.Join(t.TempDir(), "got")
	for _, d := range []string{want, got} {
		if _, err := makeSampleTree(d); err != nil {
			t.Fatal(err)
		}
	}
	at := func(rel string) string { return filepath.Join(got, filepath.FromSlash(rel)) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	keepTimes := func(rel string, change func()) {
		t.Helper()
		fi, err := os.Lstat(at(rel))
		must(err)
		change()
		must(os.Chtimes(at(rel), fi.ModTime(), fi.ModTime()))
	}
	// Same size and mtime, one byte different.
	keepTimes("sizes/file-65537.bin", func() {
		data, err := os.ReadFile(at("sizes/file-65537.bin"))
		must(err)
		data[65000] ^= 0xff
		must(os.WriteFile(at("sizes/file-65537.bin"), data, 0))
	})
	must(os.Chmod(at("docs/private.key"), 0o640))
	keepTimes("docs", func() { must(os.Remove(at("docs/one-byte"))) })
	keepTimes("bin", func() { must(os.WriteFile(at("bin/extra"), nil, 0o644)) })
	keepTimes("", func() {
		must(os.Remove(at("latest-cat.jpg")))
		must(os.Symlink("images/train/dogs/dogs-000.jpg", at("latest-cat.jpg")))
	})
	must(os.Chtimes(at("deep/a/b/c/d/e/f/bottom.txt"), time.Unix(1, 0), time.Unix(1, 0)))
	keepTimes("shared/notes.txt", func() { must(os.Truncate(at("shared/notes.txt"), 300)) })
	// The roots were made by different calls: give them the same mtime.
	fi, err := os.Stat(want)
	must(err)
	must(os.Chtimes(got, fi.ModTime(), fi.ModTime()))

	rep, err := compareTree(t.Context(), want, openLocal(t, got))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Mismatches, "\n")
	for _, w := range []string{
		"/sizes/file-65537.bin: content differs at byte 65000",
		"/docs/private.key: mode 0640 through NFS, 0600 locally",
		"/docs/one-byte: missing through NFS",
		"/bin/extra: exists through NFS but not in the local tree",
		`/latest-cat.jpg: symlink target "images/train/dogs/dogs-000.jpg" through NFS, "images/train/cats/cats-009.jpg" locally`,
		"/deep/a/b/c/d/e/f/bottom.txt: mtime 1970-01-01T00:00:01Z through NFS",
		"/shared/notes.txt: size 300 through NFS, 333 locally",
		"/shared/notes.txt: NFS reported EOF at 300 but the local file is longer",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("mismatches lack %q", w)
		}
	}
	if len(rep.Mismatches) != 8 {
		t.Errorf("%d mismatches, want 8:\n%s", len(rep.Mismatches), all)
	}
}
