package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
)

// treeReader is what compareTree needs of an origin: a backend.Origin
// (in the demo, backend/nfs talking to the running server) fits.
type treeReader interface {
	Root(ctx context.Context) (backend.Handle, backend.Attr, error)
	ReadDir(ctx context.Context, cred backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error
	ReadLink(ctx context.Context, cred backend.Cred, h backend.Handle) (string, error)
	Read(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (n int, eof bool, err error)
}

// report is the outcome of compareTree.
type report struct {
	Files, Dirs, Symlinks int
	Bytes                 int64 // file content read through the reader
	Elapsed               time.Duration
	Mismatches            []string // "path: what differs", sorted
}

// compareReadBytes is the size of each Read of the comparison (NFS rtmax).
const compareReadBytes = 1 << 20

// compareParallel bounds the files compared at once.
const compareParallel = 8

// compareTree walks the local tree at root and the same tree through r and
// compares every name, type, mode (07777), size, uid, gid, nlink, mtime,
// symlink target and byte of content, and that hard links share a FileID.
// Differences are collected in the report; the error is for failures that
// stop the walk (the reader failing, ctx cancelled).
func compareTree(ctx context.Context, root string, r treeReader) (report, error) {
	c := &comparer{r: r, cred: backend.Cred{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}, links: map[uint64]linkSeen{}}
	h, attr, err := r.Root(ctx)
	if err != nil {
		return report{}, fmt.Errorf("root: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(compareParallel)
	c.compareAttr("/", root, attr)
	err = c.walk(gctx, g, "/", root, h)
	if werr := g.Wait(); err == nil {
		err = werr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(c.rep.Mismatches)
	return c.rep, err
}

// linkSeen records the first name seen for a local inode with nlink > 1.
type linkSeen struct {
	name   string
	fileID uint64
}

type comparer struct {
	r    treeReader
	cred backend.Cred
	mu   sync.Mutex // guards rep and links
	rep  report
	// links maps the local inode of multiply linked files to the first
	// name seen and its FileID through r.
	links map[uint64]linkSeen
}

func (c *comparer) mismatch(name, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Mismatches = append(c.rep.Mismatches, name+": "+fmt.Sprintf(format, args...))
}

// walk compares directory dir (local path lp, handle h) and everything
// under it. File contents are compared on g's goroutines.
func (c *comparer) walk(ctx context.Context, g *errgroup.Group, dir, lp string, h backend.Handle) error {
	c.mu.Lock()
	c.rep.Dirs++
	c.mu.Unlock()
	local, err := os.ReadDir(lp)
	if err != nil {
		return fmt.Errorf("read local dir %s: %w", lp, err)
	}
	remote := map[string]backend.DirEntry{}
	if err := c.r.ReadDir(ctx, c.cred, h, func(e backend.DirEntry) bool {
		if _, dup := remote[e.Name]; dup {
			c.mismatch(path.Join(dir, e.Name), "listed twice")
		}
		remote[e.Name] = e
		return true
	}); err != nil {
		return fmt.Errorf("readdir %s: %w", dir, err)
	}
	for _, le := range local {
		name := path.Join(dir, le.Name())
		re, ok := remote[le.Name()]
		if !ok {
			c.mismatch(name, "missing through NFS")
			continue
		}
		delete(remote, le.Name())
		llp := filepath.Join(lp, le.Name())
		st := c.compareAttr(name, llp, re.Attr)
		if st == nil {
			continue
		}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			if re.Attr.Type == backend.TypeDirectory {
				if err := c.walk(ctx, g, name, llp, re.Handle); err != nil {
					return err
				}
			}
		case syscall.S_IFLNK:
			c.mu.Lock()
			c.rep.Symlinks++
			c.mu.Unlock()
			if re.Attr.Type == backend.TypeSymlink {
				if err := c.compareSymlink(ctx, name, llp, re.Handle); err != nil {
					return err
				}
			}
		case syscall.S_IFREG:
			c.mu.Lock()
			c.rep.Files++
			c.mu.Unlock()
			if re.Attr.Type == backend.TypeRegular {
				g.Go(func() error { return c.compareContent(ctx, name, llp, re.Handle, re.Attr.SizeBytes) })
			}
		}
	}
	for n := range remote {
		c.mismatch(path.Join(dir, n), "exists through NFS but not in the local tree")
	}
	return nil
}

// compareAttr compares the attributes that must survive the trip through
// nascache and returns the local stat (nil if it failed).
func (c *comparer) compareAttr(name, lp string, a backend.Attr) *syscall.Stat_t {
	var st syscall.Stat_t
	if err := syscall.Lstat(lp, &st); err != nil {
		c.mismatch(name, "local lstat: %v", err)
		return nil
	}
	if t := local.FileTypeOf(st.Mode); t != a.Type {
		c.mismatch(name, "type %s through NFS, %s locally", a.Type, t)
		return &st
	}
	if m := st.Mode & 0o7777; m != a.Mode {
		c.mismatch(name, "mode %04o through NFS, %04o locally", a.Mode, m)
	}
	if a.Type != backend.TypeDirectory && uint64(st.Size) != a.SizeBytes {
		c.mismatch(name, "size %d through NFS, %d locally", a.SizeBytes, st.Size)
	}
	if st.Uid != a.UID || st.Gid != a.GID {
		c.mismatch(name, "owner %d:%d through NFS, %d:%d locally", a.UID, a.GID, st.Uid, st.Gid)
	}
	if uint32(st.Nlink) != a.Nlink && a.Type != backend.TypeDirectory {
		c.mismatch(name, "nlink %d through NFS, %d locally", a.Nlink, st.Nlink)
	}
	if mt := time.Unix(st.Mtim.Sec, st.Mtim.Nsec); a.Type != backend.TypeSymlink && !mt.Equal(a.Mtime) {
		c.mismatch(name, "mtime %s through NFS, %s locally", a.Mtime.UTC().Format(time.RFC3339Nano), mt.UTC().Format(time.RFC3339Nano))
	}
	if st.Nlink > 1 && a.Type == backend.TypeRegular {
		c.mu.Lock()
		first, seen := c.links[st.Ino]
		if !seen {
			c.links[st.Ino] = linkSeen{name: name, fileID: a.FileID}
		}
		c.mu.Unlock()
		if seen && first.fileID != a.FileID {
			c.mismatch(name, "hard link of %s but FileID %d through NFS, %d for %s", first.name, a.FileID, first.fileID, first.name)
		}
	}
	return &st
}

func (c *comparer) compareSymlink(ctx context.Context, name, lp string, h backend.Handle) error {
	want, err := os.Readlink(lp)
	if err != nil {
		c.mismatch(name, "local readlink: %v", err)
		return nil
	}
	got, err := c.r.ReadLink(ctx, c.cred, h)
	if err != nil {
		return fmt.Errorf("readlink %s: %w", name, err)
	}
	if got != want {
		c.mismatch(name, "symlink target %q through NFS, %q locally", got, want)
	}
	return nil
}

// compareContent reads the whole file through r and compares it with the
// local file, reporting the first differing offset.
func (c *comparer) compareContent(ctx context.Context, name, lp string, h backend.Handle, size uint64) error {
	f, err := os.Open(lp)
	if err != nil {
		c.mismatch(name, "local open: %v", err)
		return nil
	}
	defer f.Close()
	got := make([]byte, compareReadBytes)
	want := make([]byte, compareReadBytes)
	var off uint64
	for {
		n, eof, err := c.r.Read(ctx, c.cred, h, got, off)
		if err != nil {
			return fmt.Errorf("read %s at %d: %w", name, off, err)
		}
		c.mu.Lock()
		c.rep.Bytes += int64(n)
		c.mu.Unlock()
		m, lerr := io.ReadFull(f, want[:n])
		if lerr != nil && !errors.Is(lerr, io.ErrUnexpectedEOF) && !errors.Is(lerr, io.EOF) {
			c.mismatch(name, "local read at %d: %v", off, lerr)
			return nil
		}
		if m < n {
			c.mismatch(name, "NFS returned %d bytes past the local end at %d", n-m, off+uint64(m))
			return nil
		}
		if i := firstDiff(got[:n], want[:n]); i >= 0 {
			c.mismatch(name, "content differs at byte %d", off+uint64(i))
			return nil
		}
		off += uint64(n)
		if eof || n == 0 {
			break
		}
	}
	if off != size {
		c.mismatch(name, "read %d bytes through NFS before EOF, size is %d", off, size)
		return nil
	}
	// The local file must end where NFS said it did.
	switch k, err := f.Read(want[:1]); {
	case k != 0:
		c.mismatch(name, "NFS reported EOF at %d but the local file is longer", off)
	case err != nil && !errors.Is(err, io.EOF):
		c.mismatch(name, "local read at %d: %v", off, err)
	}
	return nil
}

// firstDiff returns the index of the first differing byte, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}
