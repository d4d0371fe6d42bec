package cachefs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/meta"
	"github.com/nascache/nascache/nfsserver"
	"github.com/rs/zerolog"
)

var _ nfsserver.FS = (*cachefs.FS)(nil)

// TestMain fails the package when a test leaves a goroutine of nascache
// code running (FS starts none; this keeps it so).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "nascache/nascache/") && !strings.Contains(g, "TestMain") {
				fmt.Fprintf(os.Stderr, "leaked goroutine:\n%s\n", g)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// countingOrigin counts ReadDir calls of the origin it wraps.
type countingOrigin struct {
	backend.Origin
	readDirs atomic.Int64
}

func (c *countingOrigin) ReadDir(ctx context.Context, cred backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	c.readDirs.Add(1)
	return c.Origin.ReadDir(ctx, cred, dir, fn)
}

type harness struct {
	fs     *cachefs.FS
	db     *meta.DB
	origin *countingOrigin
	dir    string // the origin directory
	dbPath string
	root   cachefs.NodeID
}

var (
	rootCred = cachefs.Cred{}
	alice    = cachefs.Cred{UID: 1000, GID: 1000, GIDs: []uint32{1000}}
	bob      = cachefs.Cred{UID: 1001, GID: 1001, GIDs: []uint32{1001}}
)

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir(), dbPath: filepath.Join(t.TempDir(), "meta.db")}
	h.open(t)
	return h
}

// open (re)opens meta, origin and FS over the harness's directories.
func (h *harness) open(t testing.TB) {
	t.Helper()
	db, err := meta.Open(h.dbPath, meta.Options{Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := local.New(h.dir, local.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.ExportID("/data")
	if err != nil {
		t.Fatal(err)
	}
	h.db, h.origin = db, &countingOrigin{Origin: lo}
	h.fs, err = cachefs.New(cachefs.Config{Exports: []cachefs.ExportConfig{{ID: id, Path: "/data", Origin: h.origin}}}, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h.root, _, err = h.fs.Root(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
}

func (h *harness) close() {
	if h.fs == nil {
		return
	}
	_ = h.fs.Close()
	_ = h.origin.Close()
	_ = h.db.Close()
	h.fs = nil
}

func mode(m uint32) *uint32 { return &m }

func (h *harness) create(t *testing.T, cred cachefs.Cred, dir cachefs.NodeID, name string, m uint32) cachefs.NodeID {
	t.Helper()
	id, _, _, err := h.fs.Create(t.Context(), cred, dir, name, cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: cachefs.SetAttr{Mode: mode(m)}})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return id
}

func (h *harness) mkdir(t *testing.T, cred cachefs.Cred, dir cachefs.NodeID, name string, m uint32) cachefs.NodeID {
	t.Helper()
	id, _, _, err := h.fs.Mkdir(t.Context(), cred, dir, name, cachefs.SetAttr{Mode: mode(m)})
	if err != nil {
		t.Fatalf("mkdir %q: %v", name, err)
	}
	return id
}

func (h *harness) lookup(t *testing.T, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.NodeID, cachefs.Attr) {
	t.Helper()
	id, a, _, err := h.fs.Lookup(t.Context(), cred, dir, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return id, a
}

func TestBasicOps(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	d := h.mkdir(t, rootCred, h.root, "d", 0o755)
	f := h.create(t, rootCred, d, "f", 0o644)
	res, err := h.fs.Write(ctx, rootCred, f, 3, []byte("hello"), cachefs.FileSync)
	if err != nil || res.Count != 5 || res.Committed != cachefs.FileSync {
		t.Fatalf("write: %+v %v", res, err)
	}
	if res.WCC.Before == nil || res.WCC.After == nil || res.WCC.After.SizeBytes != 8 || res.WCC.Before.SizeBytes != 0 {
		t.Fatalf("write wcc %+v", res.WCC)
	}
	rr, err := h.fs.Read(ctx, rootCred, f, 0, 100)
	if err != nil || !bytes.Equal(rr.Data, []byte("\x00\x00\x00hello")) || !rr.EOF {
		t.Fatalf("read: %q %v %v", rr.Data, rr.EOF, err)
	}
	a, err := h.fs.GetAttr(ctx, rootCred, f)
	if err != nil {
		t.Fatal(err)
	}
	if a.FileID != f.Ino || a.FSID != rr.Attr.FSID || a.Type != cachefs.TypeRegular || a.Mode != 0o644 {
		t.Fatalf("attr %+v", a)
	}
	// The same object under two names has one inode.
	if _, _, err := h.fs.Link(ctx, rootCred, f, h.root, "g"); err != nil {
		t.Fatal(err)
	}
	g, ga := h.lookup(t, rootCred, h.root, "g")
	if g != f || ga.Nlink != 2 {
		t.Fatalf("link: %v vs %v, nlink %d", g, f, ga.Nlink)
	}
	// Symlink and mknod.
	s, _, _, err := h.fs.Symlink(ctx, rootCred, d, "s", "f", cachefs.SetAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if target, _, err := h.fs.ReadLink(ctx, rootCred, s); err != nil || target != "f" {
		t.Fatalf("readlink %q %v", target, err)
	}
	if _, a, _, err := h.fs.Mknod(ctx, rootCred, d, "p", cachefs.TypeFIFO, cachefs.SetAttr{Mode: mode(0o600)}, 0, 0); err != nil || a.Type != cachefs.TypeFIFO {
		t.Fatalf("mknod %+v %v", a, err)
	}
	// Rmdir of a non-empty directory.
	if _, err := h.fs.Rmdir(ctx, rootCred, h.root, "d"); !errors.Is(err, cachefs.ErrNotEmpty) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	// Remove the last name: the old node is stale.
	if _, err := h.fs.Remove(ctx, rootCred, h.root, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.fs.Remove(ctx, rootCred, d, "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.fs.GetAttr(ctx, rootCred, f); !errors.Is(err, cachefs.ErrStale) {
		t.Fatalf("getattr of removed file: %v", err)
	}
	// Commit, FSStat, PathConf.
	f2 := h.create(t, rootCred, h.root, "f2", 0o644)
	if _, err := h.fs.Write(ctx, rootCred, f2, 0, []byte("x"), cachefs.Unstable); err != nil {
		t.Fatal(err)
	}
	if w, err := h.fs.Commit(ctx, rootCred, f2); err != nil || w.After == nil || w.After.SizeBytes != 1 {
		t.Fatalf("commit %+v %v", w, err)
	}
	if st, _, err := h.fs.FSStat(ctx, rootCred, h.root); err != nil || st.TotalBytes == 0 {
		t.Fatalf("fsstat %+v %v", st, err)
	}
	if pc, _, err := h.fs.PathConf(ctx, rootCred, h.root); err != nil || pc.NameMax != 255 {
		t.Fatalf("pathconf %+v %v", pc, err)
	}
}

func TestLookupNames(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	d := h.mkdir(t, rootCred, h.root, "d", 0o755)
	cases := []struct {
		name string
		dir  cachefs.NodeID
		want cachefs.NodeID
		err  error
	}{
		{".", d, d, nil},
		{"..", d, h.root, nil},
		{"..", h.root, h.root, nil}, // no escape above the export root
		{".", h.root, h.root, nil},
		{"d", h.root, d, nil},
		{"", h.root, cachefs.NodeID{}, cachefs.ErrInvalid},
		{"a/b", h.root, cachefs.NodeID{}, cachefs.ErrInvalid},
		{"a\x00b", h.root, cachefs.NodeID{}, cachefs.ErrInvalid},
		{strings.Repeat("n", 256), h.root, cachefs.NodeID{}, cachefs.ErrNameTooLong},
		{"missing", h.root, cachefs.NodeID{}, cachefs.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%q", c.name), func(t *testing.T) {
			got, _, _, err := h.fs.Lookup(ctx, rootCred, c.dir, c.name)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %v %v, want %v", got, err, c.want)
			}
		})
	}
	if _, _, _, err := h.fs.Create(ctx, rootCred, h.root, "..", cachefs.CreateArgs{}); !errors.Is(err, cachefs.ErrExist) {
		t.Fatalf("create ..: %v", err)
	}
	f := h.create(t, rootCred, h.root, "file", 0o644)
	if _, _, _, err := h.fs.Lookup(ctx, rootCred, f, "x"); !errors.Is(err, cachefs.ErrNotDir) {
		t.Fatalf("lookup in a file: %v", err)
	}
}

func TestStaleNodeIDs(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	f := h.create(t, rootCred, h.root, "f", 0o644)
	for _, n := range []cachefs.NodeID{
		{Export: f.Export, Ino: f.Ino, Gen: f.Gen + 1},
		{Export: f.Export + 1, Ino: f.Ino, Gen: f.Gen},
		{Export: f.Export, Ino: f.Ino + 1000, Gen: f.Gen},
		{},
	} {
		if _, err := h.fs.GetAttr(ctx, rootCred, n); !errors.Is(err, cachefs.ErrStale) {
			t.Fatalf("getattr %v: %v", n, err)
		}
	}
	// NodeIDs survive a restart.
	h.close()
	h.open(t)
	if a, err := h.fs.GetAttr(ctx, rootCred, f); err != nil || a.FileID != f.Ino {
		t.Fatalf("after restart: %+v %v", a, err)
	}
}

// TestStaleHealAfterDirRename renames a directory through nascache and
// behind its back; nodes below it keep working.
func TestStaleHealAfterDirRename(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	a := h.mkdir(t, rootCred, h.root, "a", 0o755)
	b := h.mkdir(t, rootCred, a, "b", 0o755)
	f := h.create(t, rootCred, b, "f", 0o644)
	if _, err := h.fs.Write(ctx, rootCred, f, 0, []byte("data"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.fs.Rename(ctx, rootCred, h.root, "a", h.root, "a2"); err != nil {
		t.Fatal(err)
	}
	rr, err := h.fs.Read(ctx, rootCred, f, 0, 10)
	if err != nil || string(rr.Data) != "data" {
		t.Fatalf("read after rename through nascache: %q %v", rr.Data, err)
	}
	// Behind nascache's back, two levels up.
	if err := os.Rename(filepath.Join(h.dir, "a2"), filepath.Join(h.dir, "a3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(h.dir, "a3", "b"), filepath.Join(h.dir, "a3", "b2")); err != nil {
		t.Fatal(err)
	}
	// The renamed-behind-the-back directories are no longer under their
	// recorded names; heal finds them by FileID in their parents.
	if _, err := h.fs.GetAttr(ctx, rootCred, f); err != nil {
		t.Fatalf("getattr after renames behind nascache's back: %v", err)
	}
	a3, _ := h.lookup(t, rootCred, h.root, "a3")
	if a3 != a {
		t.Fatalf("a3 is %v, was %v", a3, a)
	}
	b2, _ := h.lookup(t, rootCred, a3, "b2")
	if b2 != b {
		t.Fatalf("b2 is %v, was %v", b2, b)
	}
	if _, err := h.fs.Write(ctx, rootCred, f, 4, []byte("!"), cachefs.FileSync); err != nil {
		t.Fatalf("write after heal: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(h.dir, "a3", "b2", "f"))
	if err != nil || string(got) != "data!" {
		t.Fatalf("origin content %q %v", got, err)
	}
	// ".." of a moved directory is its new parent.
	if p, _ := h.lookup(t, rootCred, b2, ".."); p != a {
		t.Fatalf(".. of b2 is %v, want %v", p, a)
	}
}

func TestPermissionsEndToEnd(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	pub := h.mkdir(t, rootCred, h.root, "pub", 0o1777)
	f := h.create(t, alice, pub, "alice-file", 0o644)
	if _, err := h.fs.Write(ctx, bob, f, 0, []byte("x"), cachefs.FileSync); !errors.Is(err, cachefs.ErrAccess) {
		t.Fatalf("bob writes alice's 0644 file: %v", err)
	}
	if _, err := h.fs.Remove(ctx, bob, pub, "alice-file"); !errors.Is(err, cachefs.ErrPerm) {
		t.Fatalf("bob removes in sticky dir: %v", err)
	}
	if _, _, err := h.fs.Rename(ctx, bob, pub, "alice-file", pub, "stolen"); !errors.Is(err, cachefs.ErrPerm) {
		t.Fatalf("bob renames in sticky dir: %v", err)
	}
	if _, err := h.fs.SetAttr(ctx, bob, f, cachefs.SetAttr{Mode: mode(0o777)}, nil); !errors.Is(err, cachefs.ErrPerm) {
		t.Fatalf("bob chmods alice's file: %v", err)
	}
	if _, err := h.fs.SetAttr(ctx, rootCred, h.root, cachefs.SetAttr{Mode: mode(0o777)}, nil); err != nil {
		t.Fatal(err)
	}
	priv := h.mkdir(t, alice, h.root, "priv", 0o700)
	if _, _, _, err := h.fs.Lookup(ctx, bob, priv, "x"); !errors.Is(err, cachefs.ErrAccess) {
		t.Fatalf("bob searches 0700 dir: %v", err)
	}
	if _, _, _, err := h.fs.Create(ctx, bob, priv, "x", cachefs.CreateArgs{}); !errors.Is(err, cachefs.ErrAccess) {
		t.Fatalf("bob creates in 0700 dir: %v", err)
	}
	got, _, err := h.fs.Access(ctx, bob, f, cachefs.AccessRead|cachefs.AccessModify)
	if err != nil || got != cachefs.AccessRead {
		t.Fatalf("access for bob: %#x %v", got, err)
	}
	// Alice's file, created 0444, stays writable by her (owner override).
	ro := h.create(t, alice, pub, "ro", 0o444)
	if _, err := h.fs.Write(ctx, alice, ro, 0, []byte("x"), cachefs.FileSync); err != nil {
		t.Fatalf("owner writes her 0444 file: %v", err)
	}
	// Ownership of new objects.
	a, err := h.fs.GetAttr(ctx, rootCred, ro)
	if err != nil || a.UID != 1000 || a.GID != 1000 {
		t.Fatalf("owner of alice's file: %+v %v", a, err)
	}
	// Guard.
	old := a.Ctime.Add(-1)
	if _, err := h.fs.SetAttr(ctx, rootCred, ro, cachefs.SetAttr{Mode: mode(0o600)}, &old); !errors.Is(err, cachefs.ErrNotSync) {
		t.Fatalf("guard: %v", err)
	}
}

// bigDirOrigin serves the directory named big as a synthetic listing of
// n entries (in reverse name order, so that sorting is exercised) and
// passes everything else to the wrapped origin. Making 100,000 real files
// would dominate the test's time without testing anything more.
type bigDirOrigin struct {
	*countingOrigin
	big backend.Handle
	n   int
}

func (b *bigDirOrigin) ReadDir(ctx context.Context, cred backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	if !bytes.Equal(dir, b.big) {
		return b.countingOrigin.ReadDir(ctx, cred, dir, fn)
	}
	b.readDirs.Add(1)
	for i := b.n - 1; i >= 0; i-- {
		e := backend.DirEntry{
			Name:   fmt.Sprintf("f%06d", i),
			Handle: backend.Handle(fmt.Sprintf("synthetic-%d", i)),
			Attr:   backend.Attr{Type: backend.TypeRegular, Mode: 0o644, Nlink: 1, FileID: 1<<40 + uint64(i)},
		}
		if !fn(e) {
			return nil
		}
	}
	return nil
}

// GetAttr answers for the synthetic entries (later pages of a listing
// carry current attributes).
func (b *bigDirOrigin) GetAttr(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.Attr, error) {
	if s, ok := strings.CutPrefix(string(h), "synthetic-"); ok {
		i, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return backend.Attr{}, fmt.Errorf("synthetic handle %q: %w", h, backend.ErrBadHandle)
		}
		return backend.Attr{Type: backend.TypeRegular, Mode: 0o644, Nlink: 1, FileID: 1<<40 + i}, nil
	}
	return b.countingOrigin.GetAttr(ctx, cred, h)
}

// TestReadDirPaging lists a 100,000-entry directory in pages and checks
// that the origin was read once, every entry came exactly once and in
// name order, and cookies resume where they left off, also after the
// snapshot was evicted.
func TestReadDirPaging(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	const n = 100000
	bigID := h.mkdir(t, rootCred, h.root, "big", 0o755)
	bigH, _, err := h.origin.Lookup(ctx, rootCred, mustRootHandle(t, h), "big")
	if err != nil {
		t.Fatal(err)
	}
	// Serve the same export through the synthetic origin.
	syn := &bigDirOrigin{countingOrigin: h.origin, big: bigH, n: n}
	fs, err := cachefs.New(cachefs.Config{Exports: []cachefs.ExportConfig{{ID: h.root.Export, Path: "/data", Origin: syn}}}, h.db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	before := syn.readDirs.Load()
	seen := make(map[string]bool, n+2)
	var cookie, verf uint64
	prev := ""
	for {
		count := 0
		res, err := fs.ReadDir(ctx, rootCred, bigID, cookie, verf, func(e cachefs.DirEntry) bool {
			if count == 1000 {
				return false
			}
			count++
			if seen[e.Name] {
				t.Fatalf("entry %q twice", e.Name)
			}
			if e.Name != ".." && e.Name <= prev {
				t.Fatalf("entry %q after %q", e.Name, prev)
			}
			seen[e.Name], prev = true, e.Name
			if e.Cookie != cookie+1 {
				t.Fatalf("entry %q: cookie %d after %d", e.Name, e.Cookie, cookie)
			}
			cookie = e.Cookie
			if e.Node.Ino != e.Attr.FileID || e.Node.Export != bigID.Export {
				t.Fatalf("entry %q: node %v, fileid %d", e.Name, e.Node, e.Attr.FileID)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if verf != 0 && res.Verifier != verf {
			t.Fatalf("verifier changed mid-listing: %d then %d", verf, res.Verifier)
		}
		verf = res.Verifier
		if res.EOF {
			break
		}
	}
	if len(seen) != n+2 || !seen["."] || !seen[".."] {
		t.Fatalf("listed %d entries", len(seen))
	}
	if got := syn.readDirs.Load() - before; got != 1 {
		t.Fatalf("paging took %d origin ReadDir calls, want 1", got)
	}
	// Entries carry the inodes meta holds for their origin objects.
	in, err := h.db.ByFileID(bigID.Export, 1<<40+498)
	if err != nil || in.Name != "f000498" {
		t.Fatalf("inode of f000498: %+v %v", in, err)
	}
}

func mustRootHandle(t *testing.T, h *harness) backend.Handle {
	t.Helper()
	rh, _, err := h.origin.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return rh
}

func TestReadDirSmall(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	sub := h.mkdir(t, rootCred, h.root, "sub", 0o755)
	for _, name := range []string{"c", "a", "b"} {
		h.create(t, rootCred, sub, name, 0o644)
	}
	var names []string
	var dotdot cachefs.NodeID
	res, err := h.fs.ReadDir(ctx, rootCred, sub, 0, 0, func(e cachefs.DirEntry) bool {
		names = append(names, e.Name)
		if e.Name == ".." {
			dotdot = e.Node
		}
		return true
	})
	if err != nil || !res.EOF || res.Verifier == 0 {
		t.Fatalf("readdir: %+v %v", res, err)
	}
	if strings.Join(names, ",") != ".,..,a,b,c" || dotdot != h.root {
		t.Fatalf("names %v, .. %v", names, dotdot)
	}
	// Entries map to the inodes a lookup gives.
	bID, _ := h.lookup(t, rootCred, sub, "b")
	var fromList cachefs.NodeID
	if _, err := h.fs.ReadDir(ctx, rootCred, sub, 3, res.Verifier, func(e cachefs.DirEntry) bool {
		fromList = e.Node
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if fromList != bID {
		t.Fatalf("readdir says b is %v, lookup %v", fromList, bID)
	}
	// An unknown verifier (evicted snapshot, restart) rebuilds the
	// snapshot and continues by position, with the same inodes.
	before := h.origin.readDirs.Load()
	var next cachefs.DirEntry
	res2, err := h.fs.ReadDir(ctx, rootCred, sub, 3, res.Verifier+12345, func(e cachefs.DirEntry) bool {
		next = e
		return false
	})
	if err != nil || next.Name != "b" || next.Node != bID || res2.Verifier == res.Verifier+12345 || res2.Verifier == 0 {
		t.Fatalf("resume after eviction: %+v %+v %v", next, res2, err)
	}
	if got := h.origin.readDirs.Load() - before; got != 1 {
		t.Fatalf("rebuild took %d origin ReadDir calls, want 1", got)
	}
	// A cookie past the end is EOF with nothing.
	res, err = h.fs.ReadDir(ctx, rootCred, sub, 99, res.Verifier, func(cachefs.DirEntry) bool {
		t.Fatal("entry past the end")
		return true
	})
	if err != nil || !res.EOF {
		t.Fatalf("past end: %+v %v", res, err)
	}
	// Listing needs read permission.
	if _, err := h.fs.SetAttr(ctx, rootCred, sub, cachefs.SetAttr{Mode: mode(0o711)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.fs.ReadDir(ctx, bob, sub, 0, 0, func(cachefs.DirEntry) bool { return true }); !errors.Is(err, cachefs.ErrAccess) {
		t.Fatalf("bob lists a 0711 dir: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := cachefs.Config{Exports: []cachefs.ExportConfig{{ID: 0, Path: ""}, {ID: 0, Path: ""}}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"id 0", "duplicate id", "empty path", "duplicate path", "no origin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation error lacks %q: %v", want, err)
		}
	}
}

// TestConcurrentOps runs mixed operations from several goroutines on
// shared directories (run with -race).
func TestConcurrentOps(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	shared := h.mkdir(t, rootCred, h.root, "shared", 0o777)
	const workers, files = 6, 20
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- func() error {
				for i := range files {
					name := fmt.Sprintf("w%d-f%d", w, i)
					id, _, _, err := h.fs.Create(ctx, alice, shared, name, cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: cachefs.SetAttr{Mode: mode(0o644)}})
					if err != nil {
						return err
					}
					if _, err := h.fs.Write(ctx, alice, id, 0, []byte(name), cachefs.Unstable); err != nil {
						return err
					}
					rr, err := h.fs.Read(ctx, alice, id, 0, 64)
					if err != nil {
						return err
					}
					if string(rr.Data) != name {
						return fmt.Errorf("read %q from %s", rr.Data, name)
					}
					if _, err := h.fs.ReadDir(ctx, alice, shared, 0, 0, func(cachefs.DirEntry) bool { return true }); err != nil {
						return err
					}
					if i%2 == 0 {
						if _, _, err := h.fs.Rename(ctx, alice, shared, name, shared, name+"-r"); err != nil {
							return err
						}
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if _, err := h.fs.ReadDir(ctx, rootCred, shared, 0, 0, func(cachefs.DirEntry) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != workers*files+2 {
		t.Fatalf("listed %d entries, want %d", n, workers*files+2)
	}
}
