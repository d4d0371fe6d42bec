package cachefs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nascache/nascache/chunkstore/chunkstoretest"
)

// TestDataCacheDiskFull puts the chunk store on a tmpfs far smaller than
// its configured capacity: the store fits itself to the file system (it
// evicts before it writes rather than fail Puts with ENOSPC), every READ
// is answered with the origin's bytes, and no temp file is left behind.
// Needs root (the test is skipped loudly without it).
func TestDataCacheDiskFull(t *testing.T) {
	// 16 pages: the store's FORMAT file takes one, and each chunk file
	// (64-byte header + 4 KiB) two, so 7 of the file's 20 chunks fit.
	mnt := chunkstoretest.MountTmpfs(t, filepath.Join(t.TempDir(), "chunks"), 16*4096)
	h := &cacheHarness{dir: t.TempDir(), chunks: mnt.Dir, dbPath: filepath.Join(t.TempDir(), "meta.db")}
	h.open(t, cacheOpts{})
	t.Cleanup(h.close)
	if st := h.store.Stats(); st.EffectiveCapacityBytes != 15*4096 {
		t.Fatalf("effective capacity %d on a tmpfs with 15 free pages", st.EffectiveCapacityBytes)
	}

	const chunks = 20
	want := pattern(chunks*chunkBytes, 5)
	h.writeOrigin(t, "f", want, epoch)
	id, _ := h.lookup(t, "f")
	for pass := 1; pass <= 2; pass++ {
		if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, want) {
			t.Fatalf("pass %d: %d bytes differ from the origin's %d", pass, len(got), len(want))
		}
	}
	st := h.store.Stats()
	if st.Chunks == 0 || st.Chunks > 7 || st.Puts < chunks {
		t.Fatalf("%d chunks stored on a file system with room for 7, %d Puts", st.Chunks, st.Puts)
	}
	ents, err := os.ReadDir(filepath.Join(mnt.Dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%d temp files left after failed writes", len(ents))
	}
	used, err := mnt.UsedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4096 + st.Chunks*2*4096); used != want {
		t.Fatalf("tmpfs holds %d bytes, want FORMAT's page and 2 pages per chunk: %d", used, want)
	}
}
