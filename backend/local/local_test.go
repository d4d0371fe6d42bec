package local_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/backend/origintest"
	"github.com/rs/zerolog"
)

func newLocal(t *testing.T) (*local.Origin, string) {
	t.Helper()
	dir := t.TempDir()
	o, err := local.New(dir, local.Options{Logger: zerolog.Nop(), MaxOpenFiles: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o, dir
}

func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the local origin chowns new objects and needs root")
	}
	origintest.Run(t, func(t *testing.T) backend.Origin {
		o, _ := newLocal(t)
		return o
	})
}

// TestNoEscape checks that symlinks and ".." never lead outside the root.
func TestNoEscape(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, dir := newLocal(t)
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "sec")); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cred := backend.Cred{}
	rh, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lookup does not follow the symlink: it is a symlink.
	oh, oa, err := o.Lookup(ctx, cred, rh, "out")
	if err != nil || oa.Type != backend.TypeSymlink {
		t.Fatalf("lookup out: %+v %v", oa, err)
	}
	if _, _, err := o.Lookup(ctx, cred, oh, "secret"); !errors.Is(err, backend.ErrNotDir) {
		t.Fatalf("lookup through a symlink: %v", err)
	}
	sh, _, err := o.Lookup(ctx, cred, rh, "sec")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, _, err := o.Read(ctx, cred, sh, buf, 0); err == nil {
		t.Fatal("read through a symlink leading outside succeeded")
	}
	if _, err := o.SetAttr(ctx, cred, sh, backend.SetAttr{Mode: new(uint32(0o777))}, nil); err != nil {
		t.Fatalf("chmod of a symlink: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(outside, "secret")); fi.Mode().Perm() != 0o644 {
		t.Fatalf("chmod through a symlink changed the outside file to %v", fi.Mode())
	}
	// ".." of the root is the root.
	ph, pa, err := o.Lookup(ctx, cred, rh, "..")
	if err != nil || string(ph) != string(rh) {
		t.Fatalf("root/.. = %x %+v %v", ph, pa, err)
	}
	// Forged handles with ".." or absolute paths are refused.
	for _, p := range []string{"..", "../x", "/etc", "a//b", "a/./b", "out/secret"} {
		h := append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1}, p...)
		_, err := o.GetAttr(ctx, cred, h)
		if !errors.Is(err, backend.ErrBadHandle) && !errors.Is(err, backend.ErrStale) {
			t.Fatalf("forged handle %q: %v", p, err)
		}
	}
}

// TestStaleAfterMove checks that a handle whose path now names another
// object is stale, not served.
func TestStaleAfterMove(t *testing.T) {
	o, dir := newLocal(t)
	ctx := t.Context()
	cred := backend.Cred{}
	rh, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("A"), 0o644); err != nil {
		t.Fatal(err)
	}
	ah, _, err := o.Lookup(ctx, cred, rh, "a")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, _, err := o.Read(ctx, cred, ah, buf, 0); err != nil {
		t.Fatal(err)
	}
	// Replace "a" behind the origin's back.
	if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Read(ctx, cred, ah, buf, 0); !errors.Is(err, backend.ErrStale) {
		t.Fatalf("read through a replaced path: %v", err)
	}
	if _, err := o.GetAttr(ctx, cred, ah); !errors.Is(err, backend.ErrStale) {
		t.Fatalf("getattr through a replaced path: %v", err)
	}
}

// TestFDCacheBounded streams reads over more files than the cache holds.
func TestFDCacheBounded(t *testing.T) {
	o, dir := newLocal(t)
	ctx := t.Context()
	cred := backend.Cred{}
	rh, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hs []backend.Handle
	for i := range 20 {
		name := string(rune('a' + i))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		h, _, err := o.Lookup(ctx, cred, rh, name)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	buf := make([]byte, 4)
	for round := range 3 {
		for i, h := range hs {
			n, eof, err := o.Read(ctx, cred, h, buf, 0)
			if err != nil || n != 1 || !eof || buf[0] != byte('a'+i) {
				t.Fatalf("round %d file %d: %q %v %v", round, i, buf[:n], eof, err)
			}
			if _, _, err := o.Write(ctx, cred, h, []byte{buf[0]}, 0, backend.Unstable); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Read(ctx, cred, hs[0], buf, 0); !errors.Is(err, backend.ErrStale) {
		t.Fatalf("read of a removed file with a cached fd: %v", err)
	}
}

func FuzzHandle(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 'a'})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte("\x01\x00\x00\x00\x00\x00\x00\x00\x01../etc"))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644); err != nil {
		f.Fatal(err)
	}
	o, err := local.New(dir, local.Options{Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = o.Close() })
	f.Fuzz(func(t *testing.T, h []byte) {
		a, err := o.GetAttr(t.Context(), backend.Cred{}, h)
		if err == nil {
			// Only real objects of the root, by their real inode.
			_ = a
			return
		}
		if !errors.Is(err, backend.ErrBadHandle) && !errors.Is(err, backend.ErrStale) && !errors.Is(err, backend.ErrNameTooLong) {
			t.Fatalf("handle %q: unexpected error class %v", h, err)
		}
	})
}
