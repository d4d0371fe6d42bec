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
//
// With the open-file cache the reader reads through A's cached descriptor
// (cached by an earlier read, or by this reader's own open): the removal
// takes it out of the cache but must not close it under the reader, and
// the cache's hold ends with the reader's; nothing stays open after.
func TestReaderKeepsRemovedChunkCharged(t *testing.T) {
	for _, how := range []string{"evicted", "removed"} {
		for _, api := range []string{"Get", "ReadAt"} {
			for _, cache := range []string{"uncached", "cached by this read", "cached before"} {
				t.Run(how+"/"+api+"/"+cache, func(t *testing.T) {
					cfg := blockConfig(t, 2)
					if cache == "uncached" {
						cfg.OpenFiles = 0
					}
					synctest.Test(t, func(t *testing.T) {
						testReaderKeepsCharge(t, cfg, how, api, cache == "cached before")
					})
				})
			}
		}
	}
}

func testReaderKeepsCharge(t *testing.T, cfg Config, how, api string, readBefore bool) {
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
	if readBefore {
		mustGetEqual(t, s, a, payload(a, oneBlock))
		if s.Stats().OpenFiles != 1 {
			t.Fatal("A's descriptor not cached after a read")
		}
	}
	opensBefore := s.fileOpens.Load()
	holding, releaseOnce := blockReadsOf(s, a)
	// On an early failure, let the reader (and so the Put) finish
	// before the deferred Close waits for them.
	defer releaseOnce()
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

	if st := s.Stats(); st.OpenFiles != 0 {
		t.Fatalf("%d descriptors cached after A's removal", st.OpenFiles)
	}

	releaseOnce()
	if err := <-readDone; err != nil {
		t.Fatalf("reader of A: %v", err)
	}
	if readBefore && s.fileOpens.Load() != opensBefore {
		t.Fatal("the reader opened A although its descriptor was cached")
	}
	if err := <-putDone; err != nil {
		t.Fatalf("Put after the reader ended: %v", err)
	}
	if !s.Contains(b) || !s.Contains(c) || s.Contains(a) {
		t.Fatalf("after: A %v, B %v, C %v; want only B and C", s.Contains(a), s.Contains(b), s.Contains(c))
	}
	checkQuiescent(t, s)
}

// blockReadsOf makes the (first) reader of k stop while it holds the
// chunk's file open, until release is called (release may be called more
// than once); holding is closed when the reader has stopped.
func blockReadsOf(s *Store, k Key) (holding <-chan struct{}, release func()) {
	h := make(chan struct{})
	r := make(chan struct{})
	s.hookReading = func(got Key) {
		if got == k {
			close(h)
			<-r
		}
	}
	return h, sync.OnceFunc(func() { close(r) })
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
//
// It runs with no open-file cache, with a cache of 4 descriptors (every
// few reads one is evicted, often while a reader uses it), and with the
// default (every chunk's descriptor cached until the chunk goes).
func TestCapacityWithReadersUnderRace(t *testing.T) {
	for _, onTmpfs := range []bool{false, true} {
		for _, openFiles := range []int{0, 4, DefaultOpenFiles} {
			t.Run(fmt.Sprintf("tmpfs=%v/open_files=%d", onTmpfs, openFiles), func(t *testing.T) {
				testCapacityWithReaders(t, onTmpfs, openFiles)
			})
		}
	}
}

func testCapacityWithReaders(t *testing.T, onTmpfs bool, openFiles int) {
	const capacityBlocks = 24
	cfg := testConfig(t, capacityBlocks*4096)
	cfg.MaxChunkBytes = 3*4096 - headerSize
	cfg.OpenFiles = openFiles
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
	if st := s.Stats(); openFiles > 0 && st.OpenFiles == 0 {
		t.Fatalf("no descriptor cached after the stress: %+v", st)
	}
	if st := s.Stats(); st.DiskFullWrites != 0 || st.EffectiveCapacityBytes != cfg.CapacityBytes {
		t.Fatalf("the file system refused %d writes; effective capacity %d of %d", st.DiskFullWrites, st.EffectiveCapacityBytes, cfg.CapacityBytes)
	}
	if mnt != nil {
		used, err := mnt.UsedBytes()
		if err != nil {
			t.Fatal(err)
		}
		if want := s.Stats().UsedBytes + 4096; used != want {
			t.Fatalf("tmpfs holds %d bytes at rest, want the store's %d + FORMAT's 4096", used, want-4096)
		}
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
