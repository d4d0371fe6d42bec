package local_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nascache/nascache/backend"
)

// TestCachedDescriptor covers the fstat fast path of GetAttr and Read (a
// file whose descriptor is cached): changes made behind the origin's back
// show, and a file removed or replaced behind its back gives a stale
// handle, never the old file's data.
func TestCachedDescriptor(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change alters the file at p, outside the origin.
		change func(t *testing.T, p string)
		// wantErr is what GetAttr and Read give afterwards; nil: they work.
		wantErr  error
		wantMode uint32
		wantData string
	}{
		{"unchanged", func(*testing.T, string) {}, nil, 0o644, "hello"},
		{"chmod", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, 0o600, "hello"},
		{"appended", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(" world"); err != nil {
				t.Fatal(err)
			}
		}, nil, 0o644, "hello world"},
		{"removed", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, backend.ErrStale, 0, ""},
		{"replaced", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("other"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, backend.ErrStale, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, dir := newLocal(t)
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			rh, _, err := o.Root(ctx)
			if err != nil {
				t.Fatal(err)
			}
			h, _, err := o.Lookup(ctx, backend.Cred{}, rh, "f")
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			// The first read opens the file and caches its descriptor.
			if n, eof, err := o.Read(ctx, backend.Cred{}, h, buf, 0); err != nil || string(buf[:n]) != "hello" || !eof {
				t.Fatalf("first read: %q eof %v err %v", buf[:n], eof, err)
			}
			tc.change(t, p)
			a, err := o.GetAttr(ctx, backend.Cred{}, h)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("getattr: %v, want %v", err, tc.wantErr)
			}
			n, eof, err := o.Read(ctx, backend.Cred{}, h, buf, 0)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("read: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			if a.Mode != tc.wantMode || a.SizeBytes != uint64(len(tc.wantData)) {
				t.Errorf("getattr: mode %o size %d, want %o %d", a.Mode, a.SizeBytes, tc.wantMode, len(tc.wantData))
			}
			if string(buf[:n]) != tc.wantData || !eof {
				t.Errorf("read: %q eof %v, want %q eof", buf[:n], eof, tc.wantData)
			}
		})
	}
}

// TestReadEOF checks the eof flag of reads ending before, at and after
// the end of a file, through the cached descriptor.
func TestReadEOF(t *testing.T) {
	o, dir := newLocal(t)
	data := bytes.Repeat([]byte("x"), 100)
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	rh, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := o.Lookup(ctx, backend.Cred{}, rh, "f")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off, size int
		wantN     int
		wantEOF   bool
	}{
		{0, 10, 10, false},
		{0, 99, 99, false},
		{0, 100, 100, true},
		{90, 10, 10, true},
		{90, 20, 10, true},
		{100, 10, 0, true},
		{200, 10, 0, true},
	} {
		n, eof, err := o.Read(ctx, backend.Cred{}, h, make([]byte, tc.size), uint64(tc.off))
		if err != nil || n != tc.wantN || eof != tc.wantEOF {
			t.Errorf("read %d+%d: n %d eof %v err %v, want %d %v", tc.off, tc.size, n, eof, err, tc.wantN, tc.wantEOF)
		}
	}
}
