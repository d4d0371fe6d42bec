package local_test

import (
	"errors"
	"math"
	"os"
	"testing"

	"github.com/nascache/nascache/backend"
)

// A write whose end lies past 2^64 is too big, not a missing file (the
// sum used to wrap and the negative offset reached WriteAt).
func TestWriteOffsetOverflow(t *testing.T) {
	o, _ := newLocal(t)
	ctx := t.Context()
	root, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := o.Create(ctx, backend.Cred{}, root, "f", backend.CreateArgs{Mode: backend.CreateGuarded})
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []uint64{math.MaxUint64 - 10, 1<<62 + 1, 1<<62 - 50} {
		if _, _, err := o.Write(ctx, backend.Cred{}, h, make([]byte, 100), off, backend.Unstable); !errors.Is(err, backend.ErrFileTooBig) {
			t.Errorf("write of 100 bytes at %d: %v, want ErrFileTooBig", off, err)
		}
	}
}

// EXCLUSIVE create keeps its verifier in times every Linux file system
// can store (31 bits of seconds), and a retry with it succeeds.
func TestExclusiveVerifierFitsOldTimes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the local origin chowns new objects and needs root")
	}
	o, _ := newLocal(t)
	ctx := t.Context()
	root, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := backend.CreateArgs{Mode: backend.CreateExclusive, Verifier: [8]byte{0xff, 0xff, 0xff, 0xfe, 0x80, 0, 0, 7}}
	h, a, err := o.Create(ctx, backend.Cred{}, root, "x", args)
	if err != nil {
		t.Fatal(err)
	}
	if a.Atime.Unix() > math.MaxInt32 || a.Mtime.Unix() > math.MaxInt32 {
		t.Fatalf("verifier stored as atime %d, mtime %d: beyond 31 bits", a.Atime.Unix(), a.Mtime.Unix())
	}
	h2, _, err := o.Create(ctx, backend.Cred{}, root, "x", args)
	if err != nil || string(h2) != string(h) {
		t.Fatalf("retried exclusive create: %v", err)
	}
	args.Verifier[7] = 8
	if _, _, err := o.Create(ctx, backend.Cred{}, root, "x", args); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("exclusive create with another verifier: %v, want ErrExist", err)
	}
}
