package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// The demo's sample tree: nested directories, files from 0 B to a few MiB
// whose content is a pure function of their path, a symlink, a hard link
// and an empty directory. Everything (content, modes, mtimes) is
// deterministic so that two runs make byte-identical trees.

// sampleMarker names the file that marks a directory as a demo tree, so
// that demo --dir only ever rewrites a tree it made.
const sampleMarker = ".nascache-demo"

// sampleEpoch is the mtime of the first sample file; the others follow
// one second (and a few nanoseconds) apart.
var sampleEpoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sampleNode is one object of the sample tree.
type sampleNode struct {
	rel    string      // slash-separated path under the tree root
	kind   fs.FileMode // 0 (regular), fs.ModeDir, fs.ModeSymlink; or hardLink
	size   int64       // regular files
	mode   fs.FileMode // permission bits
	target string      // symlink target, or the path a hard link points to
}

// hardLink marks a sampleNode that is a second name of target.
const hardLink = fs.ModeIrregular

// sampleSpec lists the sample tree in creation order (parents first).
func sampleSpec() []sampleNode {
	var ns []sampleNode
	dir := func(rel string, mode fs.FileMode) {
		ns = append(ns, sampleNode{rel: rel, kind: fs.ModeDir, mode: mode})
	}
	file := func(rel string, size int64, mode fs.FileMode) {
		ns = append(ns, sampleNode{rel: rel, size: size, mode: mode})
	}
	file(sampleMarker, 0, 0o644)
	dir("docs", 0o755)
	file("docs/README.txt", 1234, 0o644)
	file("docs/empty.txt", 0, 0o644)
	file("docs/one-byte", 1, 0o600)
	file("docs/private.key", 512, 0o600)
	file("docs/read-only.txt", 4096, 0o444)
	dir("bin", 0o755)
	file("bin/tool", 70_001, 0o755)
	file("bin/setgid-tool", 8192, 0o2755)
	dir("shared", 0o1777)
	file("shared/notes.txt", 333, 0o664)
	// Sizes around the boundaries that matter: page, NFS read sizes, 1 MiB.
	dir("sizes", 0o755)
	for _, sz := range []int64{2, 511, 4095, 4096, 4097, 32768, 65535, 65536, 65537, 131072, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3<<20 + 12345} {
		file(fmt.Sprintf("sizes/file-%d.bin", sz), sz, 0o644)
	}
	// An image-like dataset: small files of pseudo-random sizes.
	rng := rand.New(rand.NewPCG(20260102, 3))
	dir("images", 0o755)
	dir("images/train", 0o755)
	for _, class := range []string{"cats", "dogs"} {
		dir("images/train/"+class, 0o755)
		for i := range 10 {
			file(fmt.Sprintf("images/train/%s/%s-%03d.jpg", class, class, i), 1000+rng.Int64N(150_000), 0o644)
		}
	}
	dir("images/val", 0o750)
	for i := range 5 {
		file(fmt.Sprintf("images/val/val-%03d.jpg", i), 1000+rng.Int64N(150_000), 0o640)
	}
	// Depth.
	deep := "deep"
	dir(deep, 0o755)
	for _, d := range []string{"a", "b", "c", "d", "e", "f"} {
		deep += "/" + d
		dir(deep, 0o755)
	}
	file(deep+"/bottom.txt", 42, 0o644)
	dir("empty-dir", 0o755)
	ns = append(ns,
		sampleNode{rel: "docs/README.hardlink", kind: hardLink, target: "docs/README.txt"},
		sampleNode{rel: "latest-cat.jpg", kind: fs.ModeSymlink, target: "images/train/cats/cats-009.jpg"},
		sampleNode{rel: "deep/a/up-link", kind: fs.ModeSymlink, target: "../../docs"},
	)
	return ns
}

// sampleContent returns the content of the sample file at rel: a ChaCha8
// stream keyed by the path, so content differs per file but never per run.
func sampleContent(rel string, size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(sha256.Sum256([]byte("nascache demo\x00"+rel))), size)
}

// sampleSummary counts what makeSampleTree made.
type sampleSummary struct {
	Files, Dirs, Symlinks, HardLinks int
	Bytes                            int64
}

// makeSampleTree writes the sample tree into dir. dir must not exist, be
// empty, or hold an earlier sample tree (it is then removed and remade).
func makeSampleTree(dir string) (sampleSummary, error) {
	var sum sampleSummary
	if err := prepareSampleDir(dir); err != nil {
		return sum, err
	}
	for i, n := range sampleSpec() {
		p := filepath.Join(dir, filepath.FromSlash(n.rel))
		mtime := sampleEpoch.Add(time.Duration(i)*time.Second + time.Duration(i*7919))
		switch n.kind {
		case fs.ModeDir:
			if err := os.Mkdir(p, 0o700); err != nil {
				return sum, fmt.Errorf("sample tree: %w", err)
			}
			sum.Dirs++
		case fs.ModeSymlink:
			if err := os.Symlink(n.target, p); err != nil {
				return sum, fmt.Errorf("sample tree: %w", err)
			}
			sum.Symlinks++
			continue
		case hardLink:
			if err := os.Link(filepath.Join(dir, filepath.FromSlash(n.target)), p); err != nil {
				return sum, fmt.Errorf("sample tree: %w", err)
			}
			sum.HardLinks++
			continue
		default:
			if err := writeSampleFile(p, n); err != nil {
				return sum, err
			}
			sum.Files++
			sum.Bytes += n.size
		}
		// Chmod after creation: the umask must not change the modes.
		if err := os.Chmod(p, n.mode|modeSpecial(n.mode)); err != nil {
			return sum, fmt.Errorf("sample tree: %w", err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return sum, fmt.Errorf("sample tree: %w", err)
		}
	}
	// Directory mtimes changed as entries were added: set them again,
	// deepest first, so they too are deterministic.
	spec := sampleSpec()
	for i := len(spec) - 1; i >= 0; i-- {
		if spec[i].kind != fs.ModeDir {
			continue
		}
		mtime := sampleEpoch.Add(time.Duration(i)*time.Second + time.Duration(i*7919))
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(spec[i].rel)), mtime, mtime); err != nil {
			return sum, fmt.Errorf("sample tree: %w", err)
		}
	}
	return sum, nil
}

// modeSpecial converts the octal setuid/setgid/sticky bits of m (as
// written in sampleSpec: 0o4000, 0o2000, 0o1000) to fs.FileMode's flags.
func modeSpecial(m fs.FileMode) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

func writeSampleFile(p string, n sampleNode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sample tree: %w", err)
	}
	if _, err := io.Copy(f, sampleContent(n.rel, n.size)); err != nil {
		f.Close()
		return fmt.Errorf("sample tree: write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sample tree: close %s: %w", p, err)
	}
	return nil
}

// prepareSampleDir makes dir ready for a new tree.
func prepareSampleDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("sample tree: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("sample tree: %w", err)
	case len(ents) == 0:
		return nil
	}
	if _, err := os.Lstat(filepath.Join(dir, sampleMarker)); err != nil {
		return fmt.Errorf("sample tree: %s is not empty and holds no %s (not made by nascache demo); refusing to touch it", dir, sampleMarker)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		// Directories made 0555 by a user would stop RemoveAll.
		if err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				return os.Chmod(q, 0o700)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("sample tree: %w", err)
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("sample tree: %w", err)
		}
	}
	return nil
}
