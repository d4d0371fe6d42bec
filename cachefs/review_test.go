package cachefs_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/nascache/nascache/cachefs"
)

// An UNCHECKED create with a size truncates an existing file: that needs
// write permission on the file, not only on the directory.
func TestCreateUncheckedTruncateNeedsWrite(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	pub := h.mkdir(t, rootCred, h.root, "pub", 0o777)
	f := h.create(t, alice, pub, "alice-file", 0o644)
	if _, err := h.fs.Write(ctx, alice, f, 0, []byte("precious"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	trunc := cachefs.CreateArgs{Mode: cachefs.CreateUnchecked, Attr: cachefs.SetAttr{SizeBytes: &zero}}
	if _, _, _, err := h.fs.Create(ctx, bob, pub, "alice-file", trunc); !errors.Is(err, cachefs.ErrAccess) {
		t.Fatalf("bob truncates alice's 0644 file by CREATE UNCHECKED: %v, want ErrAccess", err)
	}
	if b, err := os.ReadFile(filepath.Join(h.dir, "pub", "alice-file")); err != nil || string(b) != "precious" {
		t.Fatalf("alice's file after bob's create: %q %v", b, err)
	}
	// The owner may, and a plain UNCHECKED create without a size stays
	// allowed for anyone who may write the directory.
	if _, _, _, err := h.fs.Create(ctx, bob, pub, "alice-file", cachefs.CreateArgs{Mode: cachefs.CreateUnchecked}); err != nil {
		t.Fatalf("bob's UNCHECKED create without size: %v", err)
	}
	if _, a, _, err := h.fs.Create(ctx, alice, pub, "alice-file", trunc); err != nil || a.SizeBytes != 0 {
		t.Fatalf("alice truncates her file by CREATE UNCHECKED: %+v %v", a, err)
	}
}

// Pages of a listing served from a kept snapshot carry current
// attributes, not those of the time the snapshot was taken.
func TestReadDirLaterPageAttrsCurrent(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	d := h.mkdir(t, rootCred, h.root, "d", 0o755)
	f := h.create(t, rootCred, d, "f", 0o644)
	// First page: only ".".
	first, err := h.fs.ReadDir(ctx, rootCred, d, 0, 0, func(e cachefs.DirEntry) bool { return e.Name == "." })
	if err != nil || first.EOF {
		t.Fatalf("first page: %+v %v", first, err)
	}
	if _, err := h.fs.Write(ctx, rootCred, f, 0, make([]byte, 5000), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	var got *cachefs.DirEntry
	_, err = h.fs.ReadDir(ctx, rootCred, d, 1, first.Verifier, func(e cachefs.DirEntry) bool {
		if e.Name == "f" {
			got = &e
		}
		return true
	})
	if err != nil || got == nil {
		t.Fatalf("second page: %v (f listed: %v)", err, got != nil)
	}
	if got.Attr.SizeBytes != 5000 {
		t.Fatalf("f on the second page has size %d, want the current 5000", got.Attr.SizeBytes)
	}
}

// Removing the name an inode was recorded under, while another link in
// the same directory lives on, keeps the inode usable: the server finds
// the other name.
func TestRemoveOneHardLinkKeepsNode(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	d := h.mkdir(t, rootCred, h.root, "d", 0o755)
	f := h.create(t, rootCred, d, "a", 0o644)
	if _, err := h.fs.Write(ctx, rootCred, f, 0, []byte("data"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	a, _, err := h.fs.Link(ctx, rootCred, f, d, "b")
	if err != nil || a.Nlink != 2 {
		t.Fatalf("link: nlink %d, %v", a.Nlink, err)
	}
	// LINK records the inode under b; removing b leaves a, found by
	// searching the directory.
	if _, err := h.fs.Remove(ctx, rootCred, d, "b"); err != nil {
		t.Fatal(err)
	}
	a, err = h.fs.GetAttr(ctx, rootCred, f)
	if err != nil || a.Nlink != 1 {
		t.Fatalf("getattr after removing one of two links: nlink %d, %v", a.Nlink, err)
	}
	res, err := h.fs.Read(ctx, rootCred, f, 0, 100)
	if err != nil || string(res.Data) != "data" || !res.EOF {
		t.Fatalf("read after removing one of two links: %q eof=%v %v", res.Data, res.EOF, err)
	}
	if id, _ := h.lookup(t, rootCred, d, "a"); id != f {
		t.Fatalf("lookup a: %v, want %v", id, f)
	}
}

// Renaming over a name of an object with another link keeps that object
// usable, and the moved object too.
func TestRenameOverLinkedTarget(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	d := h.mkdir(t, rootCred, h.root, "d", 0o755)
	x := h.create(t, rootCred, d, "x", 0o644)
	if _, _, err := h.fs.Link(ctx, rootCred, x, d, "y"); err != nil {
		t.Fatal(err)
	}
	z := h.create(t, rootCred, d, "z", 0o600)
	// LINK records the inode under y; z replaces y, x lives on.
	if _, _, err := h.fs.Rename(ctx, rootCred, d, "z", d, "y"); err != nil {
		t.Fatal(err)
	}
	if a, err := h.fs.GetAttr(ctx, rootCred, x); err != nil || a.Nlink != 1 || a.Mode != 0o644 {
		t.Fatalf("replaced object, still linked as x: %+v %v", a, err)
	}
	if a, err := h.fs.GetAttr(ctx, rootCred, z); err != nil || a.Mode != 0o600 {
		t.Fatalf("moved object: %+v %v", a, err)
	}
	if id, _ := h.lookup(t, rootCred, d, "y"); id != z {
		t.Fatalf("lookup y: %v, want the moved %v", id, z)
	}
}

// A large READ of a small file allocates for what the file holds, not for
// the count asked.
func TestReadSmallFileSmallBuffer(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	f := h.create(t, rootCred, h.root, "small", 0o644)
	if _, err := h.fs.Write(ctx, rootCred, f, 0, []byte("tiny"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const reads = 20
	for range reads {
		res, err := h.fs.Read(ctx, rootCred, f, 0, 1<<20)
		if err != nil || string(res.Data) != "tiny" || !res.EOF {
			t.Fatalf("read: %q eof=%v %v", res.Data, res.EOF, err)
		}
	}
	if res, err := h.fs.Read(ctx, rootCred, f, 4, 1<<20); err != nil || len(res.Data) != 0 || !res.EOF {
		t.Fatalf("read at the end: %q eof=%v %v", res.Data, res.EOF, err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > reads<<20/4 {
		t.Fatalf("%d reads of a 4-byte file allocated %d bytes", reads, got)
	}
}

// Link a file into another directory and remove the old name (git,
// maildir, NFS lock files): the inode stays usable.
func TestLinkThenUnlinkAcrossDirs(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	tmp := h.mkdir(t, rootCred, h.root, "tmp", 0o755)
	dst := h.mkdir(t, rootCred, h.root, "new", 0o755)
	f := h.create(t, rootCred, tmp, "x.tmp", 0o644)
	if _, err := h.fs.Write(ctx, rootCred, f, 0, []byte("mail"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.fs.Link(ctx, rootCred, f, dst, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.fs.Remove(ctx, rootCred, tmp, "x.tmp"); err != nil {
		t.Fatal(err)
	}
	res, err := h.fs.Read(ctx, rootCred, f, 0, 10)
	if err != nil || string(res.Data) != "mail" {
		t.Fatalf("read after link and unlink of the old name: %q %v", res.Data, err)
	}
}
