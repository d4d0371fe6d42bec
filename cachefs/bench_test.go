package cachefs_test

import (
	"testing"

	"github.com/nascache/nascache/cachefs"
)

// benchFile is newHarness for a benchmark: a file of 4 MiB at the
// origin, looked up once so that its inode is known.
func benchFile(b *testing.B) (*harness, cachefs.NodeID) {
	b.Helper()
	h := &harness{dir: b.TempDir(), dbPath: b.TempDir() + "/meta.db"}
	h.open(b)
	f, _, _, err := h.fs.Create(b.Context(), rootCred, h.root, "f", cachefs.CreateArgs{Mode: cachefs.CreateGuarded})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.fs.Write(b.Context(), rootCred, f, 0, make([]byte, 4<<20), cachefs.FileSync); err != nil {
		b.Fatal(err)
	}
	return h, f
}

// BenchmarkGetAttr is GETATTR of a known inode: no meta write, one
// origin stat.
func BenchmarkGetAttr(b *testing.B) {
	h, f := benchFile(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.fs.GetAttr(ctx, alice, f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRead1MiB is a 1 MiB READ of a known inode (page cache warm).
func BenchmarkRead1MiB(b *testing.B) {
	h, f := benchFile(b)
	ctx := b.Context()
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	var off uint64
	for b.Loop() {
		res, err := h.fs.Read(ctx, alice, f, off, 1<<20)
		if err != nil || len(res.Data) != 1<<20 {
			b.Fatal(len(res.Data), err)
		}
		off = (off + 1<<20) % (4 << 20)
	}
}
