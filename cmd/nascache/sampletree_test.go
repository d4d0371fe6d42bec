package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// treeDigest describes a tree in one line per object (path, type, mode,
// size, mtime, nlink, symlink target, content hash) and hashes it.
func treeDigest(t *testing.T, root string) (string, string) {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil // the root's mode and mtime belong to whoever made it
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s type=%o mode=%04o", rel, st.Mode&syscall.S_IFMT, st.Mode&0o7777)
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			// Directory link counts depend on the file system (btrfs: 1).
			fmt.Fprintf(&b, " nlink=%d", st.Nlink)
		}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		case syscall.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " size=%d mtime=%d.%09d sha256=%x", st.Size, st.Mtim.Sec, st.Mtim.Nsec, sha256.Sum256(data))
		case syscall.S_IFDIR:
			fmt.Fprintf(&b, " mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return b.String(), hex.EncodeToString(sum[:])
}

func TestSampleTreeDeterministic(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	sa, err := makeSampleTree(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := makeSampleTree(b)
	if err != nil {
		t.Fatal(err)
	}
	if sa != sb {
		t.Errorf("summaries differ: %+v vs %+v", sa, sb)
	}
	da, ha := treeDigest(t, a)
	db, hb := treeDigest(t, b)
	if ha != hb {
		t.Fatalf("two runs made different trees:\n%s\n---\n%s", da, db)
	}
	// The golden digest pins content, modes and mtimes across versions:
	// a change here changes every demo tree users have seen.
	const golden = "3ff1a92f1bfbfb7fcaf4dfbf4c0ca26b884f136b6aafeb11b0325a23752af513"
	if ha != golden {
		t.Errorf("tree digest = %s, want %s\n%s", ha, golden, da)
	}
}

func TestSampleTreeShape(t *testing.T) {
	dir := t.TempDir()
	sum, err := makeSampleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files < 45 || sum.Files > 60 {
		t.Errorf("%d files, want about 50", sum.Files)
	}
	if sum.Symlinks < 1 || sum.HardLinks < 1 {
		t.Errorf("summary %+v lacks a symlink or a hard link", sum)
	}
	var minSize, maxSize int64 = 1 << 62, 0
	depth := 0
	for _, n := range sampleSpec() {
		if n.kind == 0 {
			minSize, maxSize = min(minSize, n.size), max(maxSize, n.size)
		}
		depth = max(depth, strings.Count(n.rel, "/"))
	}
	if minSize != 0 || maxSize < 2<<20 || maxSize > 8<<20 {
		t.Errorf("sizes from %d to %d, want 0 B to a few MiB", minSize, maxSize)
	}
	if depth < 4 {
		t.Errorf("deepest path has %d levels, want nested directories", depth)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "empty-dir"))
	if err != nil || len(ents) != 0 {
		t.Errorf("empty-dir: %d entries, %v", len(ents), err)
	}
	var a, b syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "docs/README.txt"), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join(dir, "docs/README.hardlink"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if target, err := os.Readlink(filepath.Join(dir, "latest-cat.jpg")); err != nil || target != "images/train/cats/cats-009.jpg" {
		t.Errorf("symlink: %q %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "latest-cat.jpg")); err != nil {
		t.Errorf("symlink does not resolve: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "bin/setgid-tool"))
	if err != nil || fi.Mode()&fs.ModeSetgid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/setgid-tool mode %v %v, want setgid 0755", fi.Mode(), err)
	}
	f, err := os.Open(filepath.Join(dir, "sizes/file-4096.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(sampleContent("sizes/file-4096.bin", 4096))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) || len(got) != 4096 {
		t.Error("file content is not sampleContent of its path")
	}
}

func TestMakeSampleTreeDir(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr bool
	}{
		{"missing dir is created", func(t *testing.T, dir string) {}, false},
		{"empty dir", func(t *testing.T, dir string) { mkdir(t, dir) }, false},
		{"earlier demo tree is remade", func(t *testing.T, dir string) {
			if _, err := makeSampleTree(dir); err != nil {
				t.Fatal(err)
			}
			mkdir(t, filepath.Join(dir, "extra"))
			if err := os.Chmod(filepath.Join(dir, "extra"), 0o500); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"foreign files are left alone", func(t *testing.T, dir string) {
			mkdir(t, dir)
			if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tree")
			tt.prepare(t, dir)
			_, err := makeSampleTree(dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("makeSampleTree = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
					t.Errorf("foreign file touched: %v", err)
				}
				return
			}
			if _, err := os.Stat(filepath.Join(dir, "extra")); err == nil {
				t.Error("remade tree kept a stale entry")
			}
			_, h := treeDigest(t, dir)
			_, h2 := treeDigest(t, makeRef(t))
			if h != h2 {
				t.Error("tree differs from a fresh one")
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func makeRef(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ref")
	if _, err := makeSampleTree(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}
