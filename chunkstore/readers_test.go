package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/chunkstore/chunkstoretest"
)

// oneBlock is the data size of a chunk that costs exactly one 4 KiB block.
const oneBlock = 4096 - headerSize

// blockConfig is a store whose chunks are at most one block, with room for
// capacityBlocks of them.
func blockConfig(t testing.TB, capacityBlocks int64) Config {
	cfg := testConfig(t, capacityBlocks*4096)
	cfg.MaxChunkBytes = oneBlock
	return cfg
}

// tempFiles lists the store's temp directory.
func tempFiles(t testing.TB, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.tmpPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestReaderKeepsRemovedChunkCharged: a reader has chunk A's file open
// when A is evicted or removed. The file's blocks stay allocated until the
// reader closes it, so A stays charged: a Put that needs those bytes
// waits (it does not evict more), the reader still gets A's bytes, and
// the charge is released, and the Put goes ahead, when the reader ends.
// synctest.Wait makes "the Put is waiting" an observed fact.
func TestReaderKeepsRemovedChunkCharged(t *testing.T) {
	for _, how := range []string{"evicted", "removed"} {
		for _, api := range []string{"Get", "ReadAt"} {
			t.Run(how+"/"+api, func(t *testing.T) {
				cfg := blockConfig(t, 2)
				synctest.Test(t, func(t *testing.T) {
					testReaderKeepsCharge(t, cfg, how, api)
				})
			})
		}
	}
}

func testReaderKeepsCharge(t *testing.T, cfg Config, how, api string) {
	s, err := Open(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	ctx := context.Background()
	a, c, b := testKey(1, 0), testKey(2, 0), testKey(3, 0)
	mustPut(t, s, a, payload(a, oneBlock))
	mustPut(t, s, c, payload(c, oneBlock))
	if how == "evicted" {
		// C pinned leaves A the only chunk Put B can evict.
		s.Pin(c.Ino)
	}
	holding := make(chan struct{})
	release := make(chan struct{})
	// On an early failure, let the reader (and so the Put) finish
	// before the deferred Close waits for them.
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	s.hookReading = func(k Key) {
		if k == a {
			close(holding)
			<-release
		}
	}
	readDone := make(chan error, 1)
	go func() {
		var got []byte
		var err error
		if api == "Get" {
			got, err = s.Get(ctx, a, nil)
		} else {
			got = make([]byte, oneBlock)
			_, err = s.ReadAt(ctx, a, got, 0)
		}
		if err == nil && string(got) != string(payload(a, oneBlock)) {
			err = errors.New("reader got wrong bytes")
		}
		readDone <- err
	}()
	<-holding

	if how == "removed" {
		if err := s.Remove(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	putDone := make(chan error, 1)
	go func() { putDone <- s.Put(ctx, b, payload(b, oneBlock)) }()
	synctest.Wait() // the reader is in its hook; the Put has done all it can
	select {
	case err := <-putDone:
		t.Fatalf("Put returned (%v) while the only bytes it could get were held by a reader", err)
	default:
	}
	if s.Contains(a) {
		t.Fatal("chunk A still readable after its removal")
	}
	if _, err := os.Stat(s.path(a)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("A's file still linked: %v", err)
	}
	if temps := tempFiles(t, s); len(temps) != 0 {
		t.Fatalf("the waiting Put created temp files %v", temps)
	}
	if !s.Contains(c) {
		t.Fatal("the Put evicted C instead of waiting for A's reader")
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	used, open := s.usedBytes, s.openBytes
	s.mu.RUnlock()
	if used != cfg.CapacityBytes || open != 4096 {
		t.Fatalf("while A's reader holds it: used %d (want %d), unlinked-open %d (want 4096)", used, cfg.CapacityBytes, open)
	}

	releaseOnce()
	if err := <-readDone; err != nil {
		t.Fatalf("reader of A: %v", err)
	}
	if err := <-putDone; err != nil {
		t.Fatalf("Put after the reader ended: %v", err)
	}
	if !s.Contains(b) || !s.Contains(c) || s.Contains(a) {
		t.Fatalf("after: A %v, B %v, C %v; want only B and C", s.Contains(a), s.Contains(b), s.Contains(c))
	}
	checkQuiescent(t, s)
}

// TestReaderOfRemovedChunkMisses: a reader that looked a chunk up but
// opens its file only after the chunk was removed and stored again must
// not read (and hold open) the new file, which is charged to the new
// entry: it misses.
func TestReaderOfRemovedChunkMisses(t *testing.T) {
	s := openStore(t, blockConfig(t, 4))
	ctx := context.Background()
	k := testKey(1, 0)
	mustPut(t, s, k, payload(k, oneBlock))
	e, err := s.lookup(k)
	if err != nil {
		t.Fatal(err)
	}
	// The reader is between lookup and open while k is removed and put
	// again.
	if err := s.Remove(ctx, k); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, k, payload(k, oneBlock))
	_, err = s.read(e, nil)
	s.endRead(e)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("read through the removed entry = %v, want ErrNotFound", err)
	}
	mustGetEqual(t, s, k, payload(k, oneBlock))
	checkQuiescent(t, s)
}

// TestCapacityWithReadersUnderRace runs readers, writers (evicting) and
// removers at once, with readers made to yield while they hold a chunk
// open, and checks the accounting the whole time: usedBytes never above
// the capacity, every charge where it belongs. At rest the used bytes are
// exactly the charge of the chunks kept. On a tmpfs of exactly the
// capacity (when run as root) the file system itself enforces the bound
// at every page it allocates, unlinked-but-open files included: any
// moment over the capacity would fail a Put with ENOSPC.
func TestCapacityWithReadersUnderRace(t *testing.T) {
	for _, onTmpfs := range []bool{false, true} {
		t.Run(fmt.Sprintf("tmpfs=%v", onTmpfs), func(t *testing.T) {
			const capacityBlocks = 24
			cfg := testConfig(t, capacityBlocks*4096)
			cfg.MaxChunkBytes = 3*4096 - headerSize
			var mnt *chunkstoretest.Tmpfs
			if onTmpfs {
				// The store's FORMAT file takes one page of its own.
				mnt = chunkstoretest.MountTmpfs(t, filepath.Join(t.TempDir(), "mnt"), cfg.CapacityBytes+4096)
				cfg.Dir = mnt.Dir
			}
			s := openStore(t, cfg)
			s.hookReading = func(Key) { runtime.Gosched() }
			stressReadersAndRemovals(t, s)
			checkQuiescent(t, s)
			if mnt != nil {
				used, err := mnt.UsedBytes()
				if err != nil {
					t.Fatal(err)
				}
				if want := s.Stats().UsedBytes + 4096; used != want {
					t.Fatalf("tmpfs holds %d bytes at rest, want the store's %d + FORMAT's 4096", used, want-4096)
				}
			}
		})
	}
}

func stressReadersAndRemovals(t *testing.T, s *Store) {
	ctx := context.Background()
	const (
		keys = 60 // about 3x what fits
		ops  = 400
	)
	size := func(k Key) int { return int(k.Index%3+1)*4096 - headerSize - int(k.Ino%100) }
	keyOf := func(i int) Key { return testKey(uint64(i%10+1), uint64(i)) }
	errc := make(chan error, 16)
	// Readers and the checker run until the writers and the remover are
	// done (a miss costs next to nothing, so a fixed count of reads
	// could be over before the first Put).
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var workers, readers sync.WaitGroup
	readers.Go(func() {
		for !stopped() {
			if err := s.checkInvariants(); err != nil {
				errc <- err
				return
			}
			runtime.Gosched()
		}
	})
	for w := range 4 {
		readers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			buf := make([]byte, 3*4096)
			for !stopped() {
				k := keyOf(rng.IntN(keys))
				var got []byte
				var err error
				if rng.IntN(2) == 0 {
					got, err = s.Get(ctx, k, buf[:0])
				} else {
					var n int
					n, err = s.ReadAt(ctx, k, buf[:size(k)], 0)
					got = buf[:n]
				}
				switch {
				case errors.Is(err, ErrNotFound):
				case err != nil:
					errc <- err
					return
				case string(got) != string(payload(k, size(k))):
					errc <- fmt.Errorf("chunk %v served wrong bytes", k)
					return
				}
			}
		})
	}
	for w := range 2 {
		workers.Go(func() { // writers
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range ops {
				k := keyOf(rng.IntN(keys))
				if err := s.Put(ctx, k, payload(k, size(k))); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	workers.Go(func() { // remover
		rng := rand.New(rand.NewPCG(3, 3))
		for i := range ops / 4 {
			var err error
			if i%10 == 9 {
				_, err = s.RemoveInode(ctx, uint64(rng.IntN(10)+1))
			} else {
				err = s.Remove(ctx, keyOf(rng.IntN(keys)))
			}
			if err != nil {
				errc <- err
				return
			}
		}
	})
	workers.Wait()
	close(stop)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Evictions == 0 || st.Hits == 0 {
		t.Fatalf("the stress did not evict or hit: %+v", st)
	}
}

// TestPutNoSpaceFromFileSystem: the file system runs out of space while a
// chunk is written (ENOSPC). The Put fails with an error that says so,
// its reservation is released, no temp file is left, what was stored is
// still served, and Puts work again once there is room. The injected
// case runs everywhere; the tmpfs case (a real full file system) needs
// root.
func TestPutNoSpaceFromFileSystem(t *testing.T) {
	t.Run("injected", func(t *testing.T) {
		s := openStore(t, blockConfig(t, 8))
		kept := testKey(1, 0)
		mustPut(t, s, kept, payload(kept, oneBlock))
		full := true
		s.hookWrite = func(k Key, f *os.File) error {
			if !full {
				return nil
			}
			// Part of the data makes it to the file, as on a real disk.
			if _, err := f.Write(payload(k, oneBlock)[:1000]); err != nil {
				return err
			}
			return &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		k := testKey(2, 0)
		checkFailedPut(t, s, k, oneBlock)
		mustGetEqual(t, s, kept, payload(kept, oneBlock))
		full = false
		mustPut(t, s, k, payload(k, oneBlock))
		mustGetEqual(t, s, k, payload(k, oneBlock))
		checkQuiescent(t, s)
	})
	t.Run("tmpfs", func(t *testing.T) {
		// 16 pages: FORMAT takes one, chunks of three pages take the
		// rest five at a time, long before the store's 1 MiB capacity.
		mnt := chunkstoretest.MountTmpfs(t, filepath.Join(t.TempDir(), "mnt"), 16*4096)
		cfg := testConfig(t, 1<<20)
		cfg.Dir = mnt.Dir
		s := openStore(t, cfg)
		ctx := context.Background()
		const n = 3*4096 - headerSize
		var stored []Key
		var k Key
		for i := range 100 {
			k = testKey(uint64(i), 0)
			err := s.Put(ctx, k, payload(k, n))
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
			stored = append(stored, k)
		}
		if len(stored) != 5 {
			t.Fatalf("%d chunks stored before ENOSPC, want 5", len(stored))
		}
		for range 3 { // failing again and again leaks nothing
			checkFailedPut(t, s, k, n)
		}
		used, err := mnt.UsedBytes()
		if err != nil {
			t.Fatal(err)
		}
		if want := s.Stats().UsedBytes + 4096; used != want {
			t.Fatalf("tmpfs holds %d bytes after the failures, want %d", used, want)
		}
		for _, sk := range stored {
			mustGetEqual(t, s, sk, payload(sk, n))
		}
		if err := s.Remove(ctx, stored[0]); err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, k, payload(k, n))
		mustGetEqual(t, s, k, payload(k, n))
		checkQuiescent(t, s)
	})
}

// checkFailedPut puts k, which must fail with ENOSPC and leave the store
// as it was.
func checkFailedPut(t *testing.T, s *Store, k Key, n int) {
	t.Helper()
	before := s.Stats()
	err := s.Put(context.Background(), k, payload(k, n))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full file system = %v, want ENOSPC", err)
	}
	if s.Contains(k) {
		t.Fatal("a chunk whose write failed is readable")
	}
	if temps := tempFiles(t, s); len(temps) != 0 {
		t.Fatalf("temp files left after a failed write: %v", temps)
	}
	if after := s.Stats(); after.UsedBytes != before.UsedBytes || after.Chunks != before.Chunks {
		t.Fatalf("failed Put changed the accounting: used %d -> %d, chunks %d -> %d",
			before.UsedBytes, after.UsedBytes, before.Chunks, after.Chunks)
	}
	checkQuiescent(t, s)
}
