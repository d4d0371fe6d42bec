package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/chunkstore/chunkstoretest"
)

// fakeDisk stands in for a file system that is fuller than the store
// thinks: it refuses chunk writes (after part of the data, as a real disk
// does) while refuse is positive, and reports availBytes to statfs.
type fakeDisk struct {
	refuse     int // writes still to refuse; -1: all
	errno      syscall.Errno
	availBytes int64
}

func (d *fakeDisk) install(s *Store) {
	s.hookWrite = func(k Key, f *os.File) error {
		if d.refuse == 0 {
			return nil
		}
		if d.refuse > 0 {
			d.refuse--
		}
		if _, err := f.Write(payload(k, oneBlock)[:1000]); err != nil {
			return err
		}
		return &fs.PathError{Op: "write", Path: f.Name(), Err: d.errno}
	}
	s.statfs = func(string) (int64, error) { return d.availBytes, nil }
}

// logLines counts the lines of a JSON log at level that contain text.
func logLines(log *bytes.Buffer, level, text string) int {
	n := 0
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, `"level":"`+level+`"`) && strings.Contains(l, text) {
			n++
		}
	}
	return n
}

// TestDiskFullAdapts: the file system refuses a chunk write for want of
// space although the store's accounting has room. The Put lowers the
// effective capacity to what the store has on disk, evicts and succeeds;
// later Puts evict first (no more refused writes); the lowering is
// logged once at warn; when the file system has room again the
// capacity goes back to the configured one.
func TestDiskFullAdapts(t *testing.T) {
	cfg := blockConfig(t, 8)
	var log bytes.Buffer
	s, err := Open(cfg, zerolog.New(&log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	disk := &fakeDisk{errno: syscall.ENOSPC}
	disk.install(s)
	put := func(i int) Key {
		t.Helper()
		k := testKey(uint64(i), 0)
		mustPut(t, s, k, payload(k, oneBlock))
		return k
	}
	for i := range 4 {
		put(i)
	}
	// The disk is full: 4 of the 8 blocks are the store's, the rest
	// another tenant's.
	disk.refuse = 1
	k := put(4)
	mustGetEqual(t, s, k, payload(k, oneBlock))
	st := s.Stats()
	if st.DiskFullWrites != 1 || st.EffectiveCapacityBytes != 4*4096 || st.UsedBytes != 4*4096 || st.Evictions != 1 {
		t.Fatalf("after a refused write: %+v; want 1 refused, effective capacity and use 4 blocks, 1 eviction", st)
	}
	checkQuiescent(t, s)
	// Later Puts evict before they write.
	for i := 5; i < 10; i++ {
		put(i)
	}
	if st := s.Stats(); st.DiskFullWrites != 1 || st.UsedBytes != 4*4096 || st.Evictions != 6 {
		t.Fatalf("Puts on the full disk: %+v; want no more refused writes, 6 evictions", st)
	}
	// The other tenant grows: a refused write lowers the capacity more,
	// logged at debug this time.
	disk.refuse = 1
	put(10)
	if st := s.Stats(); st.DiskFullWrites != 2 || st.EffectiveCapacityBytes != 3*4096 {
		t.Fatalf("second refusal: %+v; want effective capacity 3 blocks", st)
	}
	if n := logLines(&log, "warn", "lowering its effective capacity"); n != 1 {
		t.Fatalf("%d warnings about the lowered capacity, want 1:\n%s", n, log.String())
	}
	if n := logLines(&log, "warn", "no space left on device"); n != 1 {
		t.Fatalf("the warning does not name the refused write's error:\n%s", log.String())
	}
	// The other tenant leaves: the capacity follows the free space up
	// to the configured one, and the store fills it.
	disk.availBytes = 2 * 4096
	put(11)
	if st := s.Stats(); st.EffectiveCapacityBytes != 5*4096 {
		t.Fatalf("with 2 blocks free: effective capacity %d, want 5 blocks", st.EffectiveCapacityBytes)
	}
	disk.availBytes = 1 << 30
	evictions := s.Stats().Evictions
	for i := 12; i < 16; i++ {
		put(i)
	}
	st = s.Stats()
	if st.EffectiveCapacityBytes != cfg.CapacityBytes || st.Evictions != evictions || st.UsedBytes != 8*4096 {
		t.Fatalf("with room again: %+v; want the configured capacity, filled without evicting", st)
	}
	if n := logLines(&log, "info", "has room for the chunk store's capacity again"); n != 1 {
		t.Fatalf("return to the configured capacity logged %d times at info, want 1:\n%s", n, log.String())
	}
	checkQuiescent(t, s)
}

// TestDiskFullFails: what a Put cannot fix. A write that fails again
// after the retry fails the Put (ENOSPC, nothing leaked); the effective
// capacity never goes below the pinned chunks, and a Put that would need
// them gets ErrNoSpace; after EDQUOT, which statfs does not see, the
// capacity is not raised from statfs.
func TestDiskFullFails(t *testing.T) {
	ctx := context.Background()
	t.Run("refused again", func(t *testing.T) {
		s := openStore(t, blockConfig(t, 8))
		disk := &fakeDisk{errno: syscall.ENOSPC, refuse: -1}
		for i := range 8 {
			k := testKey(uint64(i), 0)
			mustPut(t, s, k, payload(k, oneBlock))
		}
		disk.install(s)
		k := testKey(9, 0)
		for range 3 { // failing again and again leaks nothing
			err := s.Put(ctx, k, payload(k, oneBlock))
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Put on a full file system = %v, want ENOSPC", err)
			}
			if s.Contains(k) {
				t.Fatal("a chunk whose write failed is readable")
			}
			if temps := tempFiles(t, s); len(temps) != 0 {
				t.Fatalf("temp files left after a failed write: %v", temps)
			}
			checkQuiescent(t, s)
		}
		// Each Put evicted a chunk for its first write and one for its
		// retry, and left the capacity at what remained: a disk that
		// takes every block freed leaves the cache less and less.
		if st := s.Stats(); st.DiskFullWrites != 6 || st.Chunks != 2 || st.EffectiveCapacityBytes != 2*4096 {
			t.Fatalf("after 3 failed Puts: %+v; want 6 refused writes, 2 chunks and blocks left", st)
		}
		disk.refuse, disk.availBytes = 0, 1<<30
		mustPut(t, s, k, payload(k, oneBlock))
		mustGetEqual(t, s, k, payload(k, oneBlock))
		checkQuiescent(t, s)
	})
	t.Run("pinned", func(t *testing.T) {
		s := openStore(t, blockConfig(t, 8))
		s.Pin(1)
		for i := range 4 {
			k := testKey(1, uint64(i))
			mustPut(t, s, k, payload(k, oneBlock))
		}
		disk := &fakeDisk{errno: syscall.ENOSPC, refuse: 1}
		disk.install(s)
		k := testKey(9, 0)
		if err := s.Put(ctx, k, payload(k, oneBlock)); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("Put with only pinned chunks on a full disk = %v, want ErrNoSpace naming the refused write", err)
		}
		st := s.Stats()
		if st.EffectiveCapacityBytes != st.PinnedBytes || st.PinnedBytes != 4*4096 || st.Chunks != 4 {
			t.Fatalf("after the refusal: %+v; want the effective capacity at the pinned bytes", st)
		}
		for i := range 4 {
			k := testKey(1, uint64(i))
			mustGetEqual(t, s, k, payload(k, oneBlock))
		}
		checkQuiescent(t, s)
		// Unpinned, the chunks make room again.
		s.Unpin(1)
		mustPut(t, s, k, payload(k, oneBlock))
		checkQuiescent(t, s)
	})
	t.Run("quota", func(t *testing.T) {
		s := openStore(t, blockConfig(t, 8))
		for i := range 4 {
			k := testKey(uint64(i), 0)
			mustPut(t, s, k, payload(k, oneBlock))
		}
		disk := &fakeDisk{errno: syscall.EDQUOT, refuse: 1, availBytes: 1 << 30}
		disk.install(s)
		for i := 4; i < 8; i++ {
			k := testKey(uint64(i), 0)
			mustPut(t, s, k, payload(k, oneBlock))
		}
		if st := s.Stats(); st.DiskFullWrites != 1 || st.EffectiveCapacityBytes != 4*4096 || st.UsedBytes != 4*4096 {
			t.Fatalf("after EDQUOT: %+v; want the capacity kept at 4 blocks despite statfs", st)
		}
		checkQuiescent(t, s)
	})
}

// TestDiskFullTmpfs: the same on a real file system that runs out of
// space (a tmpfs shared with another tenant's file). The store never
// fails a Put, the file system refuses exactly one write, the store's
// accounting matches the pages in use at rest, and the capacity comes
// back when the other tenant leaves. Then a tmpfs smaller than the
// capacity from the start: the store fits itself to it at Open and no
// write is ever refused.
func TestDiskFullTmpfs(t *testing.T) {
	const (
		page  = 4096
		n     = 3*page - headerSize // a chunk of three pages
		chunk = 3 * page
	)
	ctx := context.Background()
	t.Run("shared", func(t *testing.T) {
		mnt := chunkstoretest.MountTmpfs(t, filepath.Join(t.TempDir(), "mnt"), 37*page)
		cfg := testConfig(t, 12*chunk) // 36 pages; FORMAT takes the 37th
		cfg.MaxChunkBytes = n
		cfg.Dir = filepath.Join(mnt.Dir, "store")
		s := openStore(t, cfg)
		if st := s.Stats(); st.EffectiveCapacityBytes != cfg.CapacityBytes {
			t.Fatalf("effective capacity %d at Open, want %d", st.EffectiveCapacityBytes, cfg.CapacityBytes)
		}
		i := 0
		put := func(count int) {
			t.Helper()
			for range count {
				k := testKey(uint64(i), 0)
				if err := s.Put(ctx, k, payload(k, n)); err != nil {
					t.Fatalf("Put %d: %v", i, err)
				}
				i++
			}
		}
		checkDisk := func(other int64) {
			t.Helper()
			checkQuiescent(t, s)
			used, err := mnt.UsedBytes()
			if err != nil {
				t.Fatal(err)
			}
			if want := s.Stats().UsedBytes + page + other; used != want {
				t.Fatalf("tmpfs holds %d bytes, want the store's %d + FORMAT + the other tenant's %d", used, s.Stats().UsedBytes, other)
			}
		}
		put(6)
		other := filepath.Join(mnt.Dir, "other")
		if err := os.WriteFile(other, make([]byte, 15*page), 0o600); err != nil {
			t.Fatal(err)
		}
		put(12)
		st := s.Stats()
		if st.DiskFullWrites != 1 || st.EffectiveCapacityBytes != 7*chunk || st.UsedBytes != 7*chunk {
			t.Fatalf("beside a 15-page file: %+v; want 1 refused write, 7 chunks", st)
		}
		checkDisk(15 * page)
		if err := os.Remove(other); err != nil {
			t.Fatal(err)
		}
		put(12)
		st = s.Stats()
		if st.DiskFullWrites != 1 || st.EffectiveCapacityBytes != cfg.CapacityBytes || st.UsedBytes != cfg.CapacityBytes {
			t.Fatalf("alone again: %+v; want the configured capacity, full", st)
		}
		checkDisk(0)
	})
	t.Run("smaller than the capacity", func(t *testing.T) {
		mnt := chunkstoretest.MountTmpfs(t, filepath.Join(t.TempDir(), "mnt"), 20*page)
		cfg := testConfig(t, 1<<20)
		cfg.MaxChunkBytes = n
		cfg.Dir = mnt.Dir
		s := openStore(t, cfg)
		if st := s.Stats(); st.EffectiveCapacityBytes != 19*page {
			t.Fatalf("effective capacity %d at Open on a 20-page tmpfs, want 19 pages", st.EffectiveCapacityBytes)
		}
		for i := range 30 {
			k := testKey(uint64(i), 0)
			if err := s.Put(ctx, k, payload(k, n)); err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
		}
		if st := s.Stats(); st.DiskFullWrites != 0 || st.UsedBytes != 6*chunk {
			t.Fatalf("%+v; want no refused write, 6 chunks", st)
		}
		checkQuiescent(t, s)
	})
}
