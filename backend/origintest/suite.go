package origintest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nascache/nascache/backend"
)

// root is the credential most tests use.
var root = backend.Cred{UID: 0, GID: 0}

// Run runs the suite. newOrigin returns an origin whose root is an empty
// directory; it is called once per test and should register its own
// cleanup (Close) with t.
func Run(t *testing.T, newOrigin func(t *testing.T) backend.Origin) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"RootAndGetAttr", testRoot},
		{"CreateModes", testCreateModes},
		{"CreateExclusive", testCreateExclusive},
		{"ModeBits", testModeBits},
		{"SetAttrTimes", testSetAttrTimes},
		{"SetAttrGuard", testSetAttrGuard},
		{"Ownership", testOwnership},
		{"Truncate", testTruncate},
		{"ReadWriteOffsets", testReadWrite},
		{"StableWrites", testStableWrites},
		{"MkdirRmdir", testMkdirRmdir},
		{"Symlink", testSymlink},
		{"Link", testLink},
		{"Remove", testRemove},
		{"Rename", testRename},
		{"RenameDir", testRenameDir},
		{"ReadDirLarge", testReadDirLarge},
		{"ReadDirStop", testReadDirStop},
		{"ErrorClasses", testErrors},
		{"Mknod", testMknod},
		{"FSStatPathConf", testFSStat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t)
			ctx := t.Context()
			h, a, err := o.Root(ctx)
			if err != nil {
				t.Fatalf("Root: %v", err)
			}
			tc.fn(t, &env{o: o, ctx: ctx, root: h, rootAttr: a})
		})
	}
}

type env struct {
	o        backend.Origin
	ctx      context.Context
	root     backend.Handle
	rootAttr backend.Attr
}

func ptr[T any](v T) *T { return &v }

func (e *env) create(t *testing.T, dir backend.Handle, name string, mode uint32) (backend.Handle, backend.Attr) {
	t.Helper()
	h, a, err := e.o.Create(e.ctx, root, dir, name, backend.CreateArgs{Mode: backend.CreateGuarded, Attr: backend.SetAttr{Mode: ptr(mode)}})
	if err != nil {
		t.Fatalf("Create %q: %v", name, err)
	}
	return h, a
}

func (e *env) mkdir(t *testing.T, dir backend.Handle, name string) backend.Handle {
	t.Helper()
	h, a, err := e.o.Mkdir(e.ctx, root, dir, name, backend.SetAttr{Mode: ptr(uint32(0o755))})
	if err != nil {
		t.Fatalf("Mkdir %q: %v", name, err)
	}
	if a.Type != backend.TypeDirectory {
		t.Fatalf("Mkdir %q made a %s", name, a.Type)
	}
	return h
}

func (e *env) write(t *testing.T, h backend.Handle, off uint64, p []byte) backend.Attr {
	t.Helper()
	_, a, err := e.o.Write(e.ctx, root, h, p, off, backend.FileSync)
	if err != nil {
		t.Fatalf("Write at %d: %v", off, err)
	}
	return a
}

// readAll reads the whole file in chunks of n bytes.
func (e *env) readAll(t *testing.T, h backend.Handle, n int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, n)
	for off := uint64(0); ; {
		k, eof, err := e.o.Read(e.ctx, root, h, buf, off)
		if err != nil {
			t.Fatalf("Read at %d: %v", off, err)
		}
		out = append(out, buf[:k]...)
		off += uint64(k)
		if eof {
			return out
		}
		if k == 0 {
			t.Fatalf("Read at %d: no data and no EOF", off)
		}
	}
}

func (e *env) lookup(t *testing.T, dir backend.Handle, name string) (backend.Handle, backend.Attr) {
	t.Helper()
	h, a, err := e.o.Lookup(e.ctx, root, dir, name)
	if err != nil {
		t.Fatalf("Lookup %q: %v", name, err)
	}
	return h, a
}

func (e *env) getattr(t *testing.T, h backend.Handle) backend.Attr {
	t.Helper()
	a, err := e.o.GetAttr(e.ctx, root, h)
	if err != nil {
		t.Fatalf("GetAttr: %v", err)
	}
	return a
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func (e *env) names(t *testing.T, dir backend.Handle) []string {
	t.Helper()
	var names []string
	err := e.o.ReadDir(e.ctx, root, dir, func(d backend.DirEntry) bool {
		names = append(names, d.Name)
		return true
	})
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	sort.Strings(names)
	return names
}

func testRoot(t *testing.T, e *env) {
	if e.rootAttr.Type != backend.TypeDirectory {
		t.Fatalf("root is a %s", e.rootAttr.Type)
	}
	a := e.getattr(t, e.root)
	if a.FileID != e.rootAttr.FileID || a.FileID == 0 {
		t.Fatalf("root FileID %d, then %d", e.rootAttr.FileID, a.FileID)
	}
	if a.Nlink < 2 {
		t.Fatalf("root nlink %d", a.Nlink)
	}
	if got := e.names(t, e.root); len(got) != 0 {
		t.Fatalf("root not empty: %v", got)
	}
}

func testCreateModes(t *testing.T, e *env) {
	h, a := e.create(t, e.root, "f", 0o640)
	if a.Type != backend.TypeRegular || a.Mode != 0o640 || a.SizeBytes != 0 || a.Nlink != 1 {
		t.Fatalf("new file %+v", a)
	}
	e.write(t, h, 0, []byte("hello"))
	// GUARDED on an existing name fails.
	_, _, err := e.o.Create(e.ctx, root, e.root, "f", backend.CreateArgs{Mode: backend.CreateGuarded})
	wantErr(t, "guarded create over existing", err, backend.ErrExist)
	// UNCHECKED on an existing file succeeds and keeps it (no size given).
	h2, a2, err := e.o.Create(e.ctx, root, e.root, "f", backend.CreateArgs{Mode: backend.CreateUnchecked})
	if err != nil {
		t.Fatalf("unchecked create over existing: %v", err)
	}
	if a2.FileID != a.FileID || a2.SizeBytes != 5 {
		t.Fatalf("unchecked create changed the file: %+v", a2)
	}
	if got := e.readAll(t, h2, 3); string(got) != "hello" {
		t.Fatalf("content %q", got)
	}
	// UNCHECKED with size 0 truncates.
	_, a3, err := e.o.Create(e.ctx, root, e.root, "f", backend.CreateArgs{Mode: backend.CreateUnchecked, Attr: backend.SetAttr{SizeBytes: ptr(uint64(0))}})
	if err != nil || a3.SizeBytes != 0 {
		t.Fatalf("unchecked create size 0: %+v %v", a3, err)
	}
	// UNCHECKED of a new name creates it.
	_, a4, err := e.o.Create(e.ctx, root, e.root, "g", backend.CreateArgs{Mode: backend.CreateUnchecked, Attr: backend.SetAttr{Mode: ptr(uint32(0o600))}})
	if err != nil || a4.Mode != 0o600 || a4.Type != backend.TypeRegular {
		t.Fatalf("unchecked create new: %+v %v", a4, err)
	}
	// Over a directory: never a file.
	e.mkdir(t, e.root, "d")
	_, _, err = e.o.Create(e.ctx, root, e.root, "d", backend.CreateArgs{Mode: backend.CreateGuarded})
	wantErr(t, "guarded create over dir", err, backend.ErrExist)
	if _, _, err = e.o.Create(e.ctx, root, e.root, "d", backend.CreateArgs{Mode: backend.CreateUnchecked}); err == nil {
		t.Fatal("unchecked create over a directory succeeded")
	}
}

func testCreateExclusive(t *testing.T, e *env) {
	v1 := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	h, a, err := e.o.Create(e.ctx, root, e.root, "x", backend.CreateArgs{Mode: backend.CreateExclusive, Verifier: v1})
	if err != nil {
		t.Fatalf("exclusive create: %v", err)
	}
	// A retry with the same verifier returns the same file.
	h2, a2, err := e.o.Create(e.ctx, root, e.root, "x", backend.CreateArgs{Mode: backend.CreateExclusive, Verifier: v1})
	if err != nil {
		t.Fatalf("retried exclusive create: %v", err)
	}
	if a2.FileID != a.FileID {
		t.Fatalf("retry returned another file: %d vs %d", a2.FileID, a.FileID)
	}
	_ = h2
	// Another verifier fails.
	_, _, err = e.o.Create(e.ctx, root, e.root, "x", backend.CreateArgs{Mode: backend.CreateExclusive, Verifier: [8]byte{9}})
	wantErr(t, "exclusive create with another verifier", err, backend.ErrExist)
	// The client then sets the real attributes.
	now := time.Now().Truncate(time.Second)
	a3, err := e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Mode: ptr(uint32(0o644)), Atime: backend.TimeClient, AtimeVal: now, Mtime: backend.TimeClient, MtimeVal: now}, nil)
	if err != nil || a3.Mode != 0o644 || !a3.Mtime.Equal(now) {
		t.Fatalf("setattr after exclusive create: %+v %v", a3, err)
	}
}

func testModeBits(t *testing.T, e *env) {
	h, _ := e.create(t, e.root, "f", 0o644)
	for _, m := range []uint32{0o4755, 0o2755, 0o1777, 0o7777, 0o0, 0o6711, 0o444} {
		a, err := e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Mode: ptr(m)}, nil)
		if err != nil {
			t.Fatalf("chmod %o: %v", m, err)
		}
		if a.Mode != m {
			t.Fatalf("chmod %o: mode now %o", m, a.Mode)
		}
		if got := e.getattr(t, h).Mode; got != m {
			t.Fatalf("chmod %o: GetAttr says %o", m, got)
		}
	}
	d := e.mkdir(t, e.root, "d")
	a, err := e.o.SetAttr(e.ctx, root, d, backend.SetAttr{Mode: ptr(uint32(0o3775))}, nil)
	if err != nil || a.Mode != 0o3775 {
		t.Fatalf("dir chmod 3775: %o %v", a.Mode, err)
	}
	// A directory made inside a setgid directory is setgid too.
	_, sub, err := e.o.Mkdir(e.ctx, root, d, "sub", backend.SetAttr{Mode: ptr(uint32(0o755))})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Mode&0o2000 == 0 {
		t.Fatalf("subdir of setgid dir has mode %o", sub.Mode)
	}
}

func testSetAttrTimes(t *testing.T, e *env) {
	h, _ := e.create(t, e.root, "f", 0o644)
	at := time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	mt := time.Date(2011, 12, 13, 14, 15, 16, 987654321, time.UTC)
	a, err := e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Atime: backend.TimeClient, AtimeVal: at, Mtime: backend.TimeClient, MtimeVal: mt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Atime.Equal(at) || !a.Mtime.Equal(mt) {
		t.Fatalf("times %v %v, want %v %v", a.Atime, a.Mtime, at, mt)
	}
	// Only mtime: atime stays.
	mt2 := mt.Add(time.Hour)
	a, err = e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Mtime: backend.TimeClient, MtimeVal: mt2}, nil)
	if err != nil || !a.Atime.Equal(at) || !a.Mtime.Equal(mt2) {
		t.Fatalf("mtime only: %v %v %v", a.Atime, a.Mtime, err)
	}
	// Server time is recent (well after the values above).
	a, err = e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Atime: backend.TimeServer, Mtime: backend.TimeServer}, nil)
	if err != nil || !a.Mtime.After(mt2) || !a.Atime.After(at) {
		t.Fatalf("server time: %v %v %v", a.Atime, a.Mtime, err)
	}
	if a.Ctime.Before(a.Mtime.Add(-time.Minute)) {
		t.Fatalf("ctime %v far before mtime %v", a.Ctime, a.Mtime)
	}
}

func testSetAttrGuard(t *testing.T, e *env) {
	h, a := e.create(t, e.root, "f", 0o644)
	// A guard with the current ctime passes.
	a2, err := e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Mode: ptr(uint32(0o600))}, &a.Ctime)
	if err != nil {
		t.Fatalf("guarded setattr with current ctime: %v", err)
	}
	wrong := a2.Ctime.Add(-time.Hour)
	_, err = e.o.SetAttr(e.ctx, root, h, backend.SetAttr{Mode: ptr(uint32(0o644))}, &wrong)
	wantErr(t, "guarded setattr with old ctime", err, backend.ErrNotSync)
	if m := e.getattr(t, h).Mode; m != 0o600 {
		t.Fatalf("failed guard still changed mode to %o", m)
	}
}

func testOwnership(t *testing.T, e *env) {
	d := e.mkdir(t, e.root, "d")
	if _, err := e.o.SetAttr(e.ctx, root, d, backend.SetAttr{Mode: ptr(uint32(0o777))}, nil); err != nil {
		t.Fatal(err)
	}
	user := backend.Cred{UID: 1234, GID: 5678, GIDs: []uint32{5678}}
	_, a, err := e.o.Create(e.ctx, user, d, "f", backend.CreateArgs{Mode: backend.CreateGuarded, Attr: backend.SetAttr{Mode: ptr(uint32(0o644))}})
	if err != nil {
		t.Fatal(err)
	}
	if a.UID != 1234 || a.GID != 5678 {
		t.Fatalf("file made by 1234:5678 owned by %d:%d", a.UID, a.GID)
	}
	_, a, err = e.o.Mkdir(e.ctx, user, d, "sub", backend.SetAttr{Mode: ptr(uint32(0o755))})
	if err != nil || a.UID != 1234 || a.GID != 5678 {
		t.Fatalf("dir made by 1234:5678: %d:%d %v", a.UID, a.GID, err)
	}
	_, a, err = e.o.Symlink(e.ctx, user, d, "l", "target", backend.SetAttr{})
	if err != nil || a.UID != 1234 || a.GID != 5678 {
		t.Fatalf("symlink made by 1234:5678: %d:%d %v", a.UID, a.GID, err)
	}
	// chown by root.
	h, _ := e.create(t, e.root, "g", 0o644)
	a, err = e.o.SetAttr(e.ctx, root, h, backend.SetAttr{UID: ptr(uint32(42)), GID: ptr(uint32(43))}, nil)
	if err != nil || a.UID != 42 || a.GID != 43 {
		t.Fatalf("chown: %d:%d %v", a.UID, a.GID, err)
	}
	// In a setgid directory new objects take the directory's group.
	sg := e.mkdir(t, e.root, "sg")
	if _, err := e.o.SetAttr(e.ctx, root, sg, backend.SetAttr{Mode: ptr(uint32(0o2777)), GID: ptr(uint32(777))}, nil); err != nil {
		t.Fatal(err)
	}
	_, a, err = e.o.Create(e.ctx, user, sg, "f", backend.CreateArgs{Mode: backend.CreateGuarded, Attr: backend.SetAttr{Mode: ptr(uint32(0o644))}})
	if err != nil || a.UID != 1234 || a.GID != 777 {
		t.Fatalf("file in setgid dir: %d:%d %v", a.UID, a.GID, err)
	}
}

func testTruncate(t *testing.T, e *env) {
	h, _ := e.create(t, e.root, "f", 0o644)
	e.write(t, h, 0, bytes.Repeat([]byte("x"), 10000))
	a, err := e.o.SetAttr(e.ctx, root, h, backend.SetAttr{SizeBytes: ptr(uint64(123))}, nil)
	if err != nil || a.SizeBytes != 123 {
		t.Fatalf("truncate to 123: %d %v", a.SizeBytes, err)
	}
	if got := e.readAll(t, h, 1000); len(got) != 123 {
		t.Fatalf("read %d bytes after truncate", len(got))
	}
	// Extending reads back zeros.
	a, err = e.o.SetAttr(e.ctx, root, h, backend.SetAttr{SizeBytes: ptr(uint64(5000))}, nil)
	if err != nil || a.SizeBytes != 5000 {
		t.Fatalf("extend to 5000: %d %v", a.SizeBytes, err)
	}
	got := e.readAll(t, h, 777)
	if len(got) != 5000 || !bytes.Equal(got[123:], make([]byte, 5000-123)) || got[0] != 'x' {
		t.Fatalf("content after extend: %d bytes", len(got))
	}
	d := e.mkdir(t, e.root, "d")
	_, err = e.o.SetAttr(e.ctx, root, d, backend.SetAttr{SizeBytes: ptr(uint64(0))}, nil)
	if err == nil {
		t.Fatal("truncate of a directory succeeded")
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func testReadWrite(t *testing.T, e *env) {
	h, _ := e.create(t, e.root, "f", 0o644)
	want := make([]byte, 0)
	put := func(off int, p []byte) {
		e.write(t, h, uint64(off), p)
		if need := off + len(p); need > len(want) {
			want = append(want, make([]byte, need-len(want))...)
		}
		copy(want[off:], p)
	}
	put(0, pattern(4097, 1))
	put(13, pattern(3, 2))
	put(8191, pattern(10000, 3)) // leaves a hole 4097..8191
	put(1<<20+17, pattern(65537, 4))
	a := e.getattr(t, h)
	if a.SizeBytes != uint64(len(want)) {
		t.Fatalf("size %d, want %d", a.SizeBytes, len(want))
	}
	for _, chunk := range []int{1, 4096, 65536, 1 << 20, 3 << 20} {
		if chunk == 1 {
			continue // too slow at this size; odd offsets follow
		}
		if got := e.readAll(t, h, chunk); !bytes.Equal(got, want) {
			t.Fatalf("read in chunks of %d differs", chunk)
		}
	}
	buf := make([]byte, 100)
	for _, off := range []int{1, 4095, 4097, 8190, 1<<20 + 16, len(want) - 50} {
		n, eof, err := e.o.Read(e.ctx, root, h, buf, uint64(off))
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		wantN := min(100, len(want)-off)
		if n != wantN || !bytes.Equal(buf[:n], want[off:off+n]) {
			t.Fatalf("read at %d: %d bytes, want %d", off, n, wantN)
		}
		if eof != (off+n == len(want)) {
			t.Fatalf("read at %d: eof %v", off, eof)
		}
	}
	// Past EOF: nothing, and EOF.
	n, eof, err := e.o.Read(e.ctx, root, h, buf, uint64(len(want)+1000))
	if err != nil || n != 0 || !eof {
		t.Fatalf("read past EOF: %d %v %v", n, eof, err)
	}
	// Exactly at EOF.
	n, eof, err = e.o.Read(e.ctx, root, h, buf, uint64(len(want)))
	if err != nil || n != 0 || !eof {
		t.Fatalf("read at EOF: %d %v %v", n, eof, err)
	}
	// Empty file.
	h2, _ := e.create(t, e.root, "empty", 0o644)
	n, eof, err = e.o.Read(e.ctx, root, h2, buf, 0)
	if err != nil || n != 0 || !eof {
		t.Fatalf("read of empty file: %d %v %v", n, eof, err)
	}
	testReadAttr(t, e, h, want)
	// Reading a directory fails.
	d := e.mkdir(t, e.root, "d")
	_, _, err = e.o.Read(e.ctx, root, d, buf, 0)
	wantErr(t, "read of a directory", err, backend.ErrIsDir)
	_, _, err = e.o.Write(e.ctx, root, d, buf, 0, backend.FileSync)
	wantErr(t, "write to a directory", err, backend.ErrIsDir)
}

// attrReader is the optional read that also returns the attributes after
// the read (backend/nfs and backend/local have it; cachefs uses it to
// prove a fetched chunk's version without a GETATTR).
type attrReader interface {
	ReadAttr(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, backend.Attr, bool, error)
}

// testReadAttr checks ReadAttr, if the origin has it, on the file h whose
// content is want: same bytes and eof as Read, and the attributes of the
// file as GETATTR has them.
func testReadAttr(t *testing.T, e *env, h backend.Handle, want []byte) {
	ar, ok := e.o.(attrReader)
	if !ok {
		return
	}
	ga := e.getattr(t, h)
	buf := make([]byte, 3<<20)
	for _, c := range []struct{ off, n int }{{0, len(want)}, {1, 100}, {len(want) - 50, 100}, {len(want) + 10, 10}, {0, 1 << 20}, {4095, 1<<20 + 3}} {
		p := buf[:c.n]
		n, eof, a, ok, err := ar.ReadAttr(e.ctx, root, h, p, uint64(c.off))
		if err != nil {
			t.Fatalf("ReadAttr at %d+%d: %v", c.off, c.n, err)
		}
		wantN := max(0, min(c.n, len(want)-c.off))
		if n != wantN || (wantN > 0 && !bytes.Equal(p[:n], want[c.off:c.off+n])) {
			t.Fatalf("ReadAttr at %d+%d: %d bytes, want %d", c.off, c.n, n, wantN)
		}
		if eof != (c.off+n >= len(want)) {
			t.Fatalf("ReadAttr at %d+%d: eof %v", c.off, c.n, eof)
		}
		if !ok {
			t.Fatalf("ReadAttr at %d+%d: no attributes", c.off, c.n)
		}
		if a.FileID != ga.FileID || a.SizeBytes != ga.SizeBytes || !a.Mtime.Equal(ga.Mtime) || !a.Ctime.Equal(ga.Ctime) || a.Type != backend.TypeRegular {
			t.Fatalf("ReadAttr at %d+%d: attributes %+v, GETATTR says %+v", c.off, c.n, a, ga)
		}
	}
}

func testStableWrites(t *testing.T, e *env) {
	h, _ := e.create(t, e.root, "f", 0o644)
	for i, s := range []backend.Stability{backend.Unstable, backend.DataSync, backend.FileSync} {
		got, a, err := e.o.Write(e.ctx, root, h, pattern(1000, byte(i)), uint64(i*1000), s)
		if err != nil {
			t.Fatalf("write %d: %v", s, err)
		}
		if got < s {
			t.Fatalf("write asked for stability %d, got %d", s, got)
		}
		if a.SizeBytes != uint64((i+1)*1000) {
			t.Fatalf("size after write %d: %d", i, a.SizeBytes)
		}
	}
	a, err := e.o.Commit(e.ctx, root, h)
	if err != nil || a.SizeBytes != 3000 {
		t.Fatalf("commit: %+v %v", a, err)
	}
}

func testMkdirRmdir(t *testing.T, e *env) {
	d := e.mkdir(t, e.root, "d")
	_, _, err := e.o.Mkdir(e.ctx, root, e.root, "d", backend.SetAttr{})
	wantErr(t, "mkdir over existing", err, backend.ErrExist)
	if a := e.getattr(t, e.root); a.Nlink < 3 {
		t.Logf("root nlink %d after mkdir (some origins do not count subdirs)", a.Nlink)
	}
	e.create(t, d, "f", 0o644)
	err = e.o.Rmdir(e.ctx, root, e.root, "d")
	wantErr(t, "rmdir of non-empty dir", err, backend.ErrNotEmpty)
	if err := e.o.Remove(e.ctx, root, d, "f"); err != nil {
		t.Fatal(err)
	}
	if err := e.o.Rmdir(e.ctx, root, e.root, "d"); err != nil {
		t.Fatalf("rmdir of empty dir: %v", err)
	}
	_, _, err = e.o.Lookup(e.ctx, root, e.root, "d")
	wantErr(t, "lookup after rmdir", err, backend.ErrNotExist)
	err = e.o.Rmdir(e.ctx, root, e.root, "d")
	wantErr(t, "rmdir of missing dir", err, backend.ErrNotExist)
	e.create(t, e.root, "file", 0o644)
	err = e.o.Rmdir(e.ctx, root, e.root, "file")
	wantErr(t, "rmdir of a file", err, backend.ErrNotDir)
}

func testSymlink(t *testing.T, e *env) {
	for _, target := range []string{"a/b/c", "/etc/passwd", "../../outside", "x"} {
		name := fmt.Sprintf("l%d", len(target))
		h, a, err := e.o.Symlink(e.ctx, root, e.root, name, target, backend.SetAttr{})
		if err != nil {
			t.Fatalf("symlink to %q: %v", target, err)
		}
		if a.Type != backend.TypeSymlink || a.SizeBytes != uint64(len(target)) {
			t.Fatalf("symlink attrs %+v", a)
		}
		got, err := e.o.ReadLink(e.ctx, root, h)
		if err != nil || got != target {
			t.Fatalf("readlink: %q %v, want %q", got, err, target)
		}
		_, la := e.lookup(t, e.root, name)
		if la.Type != backend.TypeSymlink {
			t.Fatalf("lookup of symlink followed it: %s", la.Type)
		}
	}
	_, _, err := e.o.Symlink(e.ctx, root, e.root, "l1", "y", backend.SetAttr{})
	wantErr(t, "symlink over existing", err, backend.ErrExist)
	fh, _ := e.create(t, e.root, "f", 0o644)
	if _, err := e.o.ReadLink(e.ctx, root, fh); err == nil {
		t.Fatal("readlink of a file succeeded")
	}
}

func testLink(t *testing.T, e *env) {
	h, a := e.create(t, e.root, "f", 0o644)
	e.write(t, h, 0, []byte("data"))
	d := e.mkdir(t, e.root, "d")
	la, err := e.o.Link(e.ctx, root, h, d, "g")
	if err != nil {
		t.Fatalf("link: %v", err)
	}
	if la.FileID != a.FileID || la.Nlink != 2 {
		t.Fatalf("after link: fileid %d nlink %d", la.FileID, la.Nlink)
	}
	gh, ga := e.lookup(t, d, "g")
	if ga.FileID != a.FileID {
		t.Fatal("link names another object")
	}
	if got := e.readAll(t, gh, 10); string(got) != "data" {
		t.Fatalf("content via link %q", got)
	}
	if err := e.o.Remove(e.ctx, root, e.root, "f"); err != nil {
		t.Fatal(err)
	}
	if a := e.getattr(t, gh); a.Nlink != 1 {
		t.Fatalf("nlink after removing one name: %d", a.Nlink)
	}
	_, err = e.o.Link(e.ctx, root, gh, d, "g")
	wantErr(t, "link over existing", err, backend.ErrExist)
}

func testRemove(t *testing.T, e *env) {
	e.create(t, e.root, "f", 0o644)
	if err := e.o.Remove(e.ctx, root, e.root, "f"); err != nil {
		t.Fatal(err)
	}
	err := e.o.Remove(e.ctx, root, e.root, "f")
	wantErr(t, "remove of missing", err, backend.ErrNotExist)
	e.mkdir(t, e.root, "d")
	if err := e.o.Remove(e.ctx, root, e.root, "d"); err == nil {
		t.Fatal("remove of a directory succeeded")
	}
	if _, _, err := e.o.Symlink(e.ctx, root, e.root, "l", "d", backend.SetAttr{}); err != nil {
		t.Fatal(err)
	}
	// Removing a symlink removes the link, not its target.
	if err := e.o.Remove(e.ctx, root, e.root, "l"); err != nil {
		t.Fatal(err)
	}
	e.lookup(t, e.root, "d")
}

func testRename(t *testing.T, e *env) {
	a, _ := e.create(t, e.root, "a", 0o644)
	e.write(t, a, 0, []byte("AAA"))
	b, bAttr := e.create(t, e.root, "b", 0o644)
	e.write(t, b, 0, []byte("BBBB"))
	_ = bAttr
	if err := e.o.Rename(e.ctx, root, e.root, "a", e.root, "c"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	ch, _ := e.lookup(t, e.root, "c")
	if got := e.readAll(t, ch, 10); string(got) != "AAA" {
		t.Fatalf("renamed content %q", got)
	}
	_, _, err := e.o.Lookup(e.ctx, root, e.root, "a")
	wantErr(t, "lookup of old name", err, backend.ErrNotExist)
	// Over an existing file: replaced.
	if err := e.o.Rename(e.ctx, root, e.root, "c", e.root, "b"); err != nil {
		t.Fatalf("rename over existing: %v", err)
	}
	bh, _ := e.lookup(t, e.root, "b")
	if got := e.readAll(t, bh, 10); string(got) != "AAA" {
		t.Fatalf("content after rename over %q", got)
	}
	if got := e.names(t, e.root); len(got) != 1 || got[0] != "b" {
		t.Fatalf("names after renames %v", got)
	}
	err = e.o.Rename(e.ctx, root, e.root, "missing", e.root, "x")
	wantErr(t, "rename of missing", err, backend.ErrNotExist)
	// A file over a non-empty directory, a directory over a file: refused.
	d := e.mkdir(t, e.root, "d")
	e.create(t, d, "inner", 0o644)
	if err := e.o.Rename(e.ctx, root, e.root, "b", e.root, "d"); err == nil {
		t.Fatal("rename of a file over a directory succeeded")
	}
	if err := e.o.Rename(e.ctx, root, e.root, "d", e.root, "b"); err == nil {
		t.Fatal("rename of a directory over a file succeeded")
	}
	e.mkdir(t, e.root, "e")
	err = e.o.Rename(e.ctx, root, e.root, "e", e.root, "d")
	wantErr(t, "rename of dir over non-empty dir", err, backend.ErrNotEmpty)
}

func testRenameDir(t *testing.T, e *env) {
	d := e.mkdir(t, e.root, "d")
	sub := e.mkdir(t, d, "sub")
	fh, fa := e.create(t, sub, "f", 0o644)
	e.write(t, fh, 0, []byte("deep"))
	other := e.mkdir(t, e.root, "other")
	if err := e.o.Rename(e.ctx, root, e.root, "d", other, "moved"); err != nil {
		t.Fatalf("rename dir: %v", err)
	}
	mh, _ := e.lookup(t, other, "moved")
	sh, _ := e.lookup(t, mh, "sub")
	nfh, nfa := e.lookup(t, sh, "f")
	if nfa.FileID != fa.FileID {
		t.Fatal("file inside moved dir changed identity")
	}
	if got := e.readAll(t, nfh, 10); string(got) != "deep" {
		t.Fatalf("content in moved dir %q", got)
	}
	// Old handles either still work (NFS) or say stale (path-based): never
	// another object.
	if a, err := e.o.GetAttr(e.ctx, root, fh); err == nil {
		if a.FileID != fa.FileID {
			t.Fatal("old handle names another object")
		}
	} else {
		wantErr(t, "old handle after dir rename", err, backend.ErrStale)
	}
	_, _, err := e.o.Lookup(e.ctx, root, e.root, "d")
	wantErr(t, "old dir name", err, backend.ErrNotExist)
	// A directory cannot move into itself.
	if err := e.o.Rename(e.ctx, root, other, "moved", mh, "x"); err == nil {
		t.Fatal("rename of a directory into itself succeeded")
	}
	_ = sub
	_ = d
}

func testReadDirLarge(t *testing.T, e *env) {
	d := e.mkdir(t, e.root, "big")
	const n = 5000
	want := make(map[string]uint64, n)
	for i := range n {
		name := fmt.Sprintf("entry-%05d-%s", i, bytes.Repeat([]byte{'x'}, i%40))
		var a backend.Attr
		var err error
		if i%10 == 0 {
			_, a, err = e.o.Mkdir(e.ctx, root, d, name, backend.SetAttr{Mode: ptr(uint32(0o755))})
		} else {
			_, a, err = e.o.Create(e.ctx, root, d, name, backend.CreateArgs{Mode: backend.CreateGuarded, Attr: backend.SetAttr{Mode: ptr(uint32(0o644))}})
		}
		if err != nil {
			t.Fatalf("make %q: %v", name, err)
		}
		want[name] = a.FileID
	}
	seen := make(map[string]bool, n)
	err := e.o.ReadDir(e.ctx, root, d, func(de backend.DirEntry) bool {
		if de.Name == "." || de.Name == ".." {
			t.Errorf("ReadDir returned %q", de.Name)
		}
		if seen[de.Name] {
			t.Errorf("ReadDir returned %q twice", de.Name)
		}
		seen[de.Name] = true
		if id, ok := want[de.Name]; !ok || id != de.Attr.FileID {
			t.Errorf("entry %q: fileid %d, want %d (known %v)", de.Name, de.Attr.FileID, id, ok)
		}
		if len(de.Handle) == 0 {
			t.Errorf("entry %q without handle", de.Name)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("listed %d entries, want %d", len(seen), n)
	}
	// Handles from a listing work.
	var h backend.Handle
	var id uint64
	if err := e.o.ReadDir(e.ctx, root, d, func(de backend.DirEntry) bool { h, id = de.Handle, de.Attr.FileID; return false }); err != nil {
		t.Fatal(err)
	}
	if a := e.getattr(t, h); a.FileID != id {
		t.Fatal("handle from ReadDir names another object")
	}
}

func testReadDirStop(t *testing.T, e *env) {
	for i := range 10 {
		e.create(t, e.root, fmt.Sprintf("f%d", i), 0o644)
	}
	calls := 0
	err := e.o.ReadDir(e.ctx, root, e.root, func(backend.DirEntry) bool { calls++; return calls < 3 })
	if err != nil || calls != 3 {
		t.Fatalf("early stop: %d calls, %v", calls, err)
	}
	fh, _ := e.create(t, e.root, "file", 0o644)
	err = e.o.ReadDir(e.ctx, root, fh, func(backend.DirEntry) bool { return true })
	wantErr(t, "readdir of a file", err, backend.ErrNotDir)
}

func testErrors(t *testing.T, e *env) {
	fh, _ := e.create(t, e.root, "f", 0o644)
	_, _, err := e.o.Lookup(e.ctx, root, e.root, "nope")
	wantErr(t, "lookup missing", err, backend.ErrNotExist)
	_, _, err = e.o.Lookup(e.ctx, root, fh, "x")
	wantErr(t, "lookup in a file", err, backend.ErrNotDir)
	_, _, err = e.o.Create(e.ctx, root, fh, "x", backend.CreateArgs{})
	wantErr(t, "create in a file", err, backend.ErrNotDir)
	_, _, err = e.o.Mkdir(e.ctx, root, fh, "x", backend.SetAttr{})
	wantErr(t, "mkdir in a file", err, backend.ErrNotDir)
	long := string(bytes.Repeat([]byte{'n'}, 256))
	_, _, err = e.o.Create(e.ctx, root, e.root, long, backend.CreateArgs{})
	wantErr(t, "create with 256-byte name", err, backend.ErrNameTooLong)
	longest := string(bytes.Repeat([]byte{'n'}, 255))
	if _, _, err := e.o.Create(e.ctx, root, e.root, longest, backend.CreateArgs{}); err != nil {
		t.Fatalf("create with 255-byte name: %v", err)
	}
	err = e.o.Remove(e.ctx, root, e.root, "nope")
	wantErr(t, "remove missing", err, backend.ErrNotExist)
	// A removed object's handle is stale (or, for NFS, stale too).
	if err := e.o.Remove(e.ctx, root, e.root, "f"); err != nil {
		t.Fatal(err)
	}
	_, err = e.o.GetAttr(e.ctx, root, fh)
	wantErr(t, "getattr of removed file", err, backend.ErrStale)
	// A garbage handle is refused, never served.
	_, err = e.o.GetAttr(e.ctx, root, backend.Handle("\xffgarbage"))
	if !errors.Is(err, backend.ErrBadHandle) && !errors.Is(err, backend.ErrStale) {
		t.Fatalf("garbage handle: %v", err)
	}
	// A cancelled context stops a call.
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, _, err := e.o.Create(ctx, root, e.root, "late", backend.CreateArgs{}); err == nil {
		t.Fatal("create with a cancelled context succeeded")
	}
}

func testMknod(t *testing.T, e *env) {
	if !e.o.Properties().SpecialFiles {
		t.Skip("origin has no special files")
	}
	for _, c := range []struct {
		name string
		t    backend.FileType
	}{{"fifo", backend.TypeFIFO}, {"sock", backend.TypeSocket}} {
		h, a, err := e.o.Mknod(e.ctx, root, e.root, c.name, c.t, backend.SetAttr{Mode: ptr(uint32(0o640))}, 0, 0)
		if err != nil {
			t.Fatalf("mknod %s: %v", c.name, err)
		}
		if a.Type != c.t || a.Mode != 0o640 {
			t.Fatalf("mknod %s: %+v", c.name, a)
		}
		if got := e.getattr(t, h); got.Type != c.t {
			t.Fatalf("getattr %s: %s", c.name, got.Type)
		}
	}
	_, _, err := e.o.Mknod(e.ctx, root, e.root, "bad", backend.TypeRegular, backend.SetAttr{}, 0, 0)
	wantErr(t, "mknod of a regular file", err, backend.ErrInvalid)
}

func testFSStat(t *testing.T, e *env) {
	s, err := e.o.FSStat(e.ctx, root, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if s.TotalBytes == 0 || s.AvailBytes > s.TotalBytes || s.FreeBytes > s.TotalBytes {
		t.Fatalf("fsstat %+v", s)
	}
	pc, err := e.o.PathConf(e.ctx, root, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if pc.NameMax < 255 || pc.LinkMax < 1 {
		t.Fatalf("pathconf %+v", pc)
	}
}
