package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// openFDs counts the process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestOpenFileCacheHit: the second read of a chunk opens nothing; with
// the cache off every read opens the file.
func TestOpenFileCacheHit(t *testing.T) {
	for _, openFiles := range []int{0, DefaultOpenFiles} {
		t.Run(fmt.Sprint(openFiles), func(t *testing.T) {
			cfg := testConfig(t, 1<<20)
			cfg.OpenFiles = openFiles
			s := openStore(t, cfg)
			k := testKey(1, 0)
			mustPut(t, s, k, payload(k, 5000))
			for range 3 {
				mustGetEqual(t, s, k, payload(k, 5000))
				p := make([]byte, 100)
				if _, err := s.ReadAt(context.Background(), k, p, 4000); err != nil || string(p) != string(payload(k, 5000)[4000:4100]) {
					t.Fatalf("ReadAt: %v", err)
				}
			}
			wantOpens, wantCached := uint64(6), 0
			if openFiles > 0 {
				wantOpens, wantCached = 1, 1
			}
			if n, st := s.fileOpens.Load(), s.Stats(); n != wantOpens || st.OpenFiles != wantCached || st.Hits != 6 {
				t.Fatalf("6 reads opened the file %d times, %d cached, %d hits; want %d, %d, 6", n, st.OpenFiles, st.Hits, wantOpens, wantCached)
			}
			checkQuiescent(t, s)
		})
	}
}

// TestOpenFileCacheBound: reading many more chunks than the cache holds
// keeps at most OpenFiles descriptors open, every byte served is right,
// and Close closes them all.
func TestOpenFileCacheBound(t *testing.T) {
	const limit = 4
	before := openFDs(t)
	cfg := testConfig(t, 1<<20)
	cfg.OpenFiles = limit
	s, err := Open(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	const store = 2 // the LOCK file and the chunks directory
	keys := make([]Key, 40)
	for i := range keys {
		keys[i] = testKey(uint64(i), 0)
		mustPut(t, s, keys[i], payload(keys[i], 3000))
	}
	// A hot set whose descriptors are cached stays cached while a scan
	// of ten times the cache goes by: the CLOCK keeps what is read
	// again, and the throttled admission keeps the scan from cycling
	// through every slot before the hot set's next read.
	hot := keys[:2]
	for i, k := range keys {
		mustGetEqual(t, s, k, payload(k, 3000))
		if i%4 == 0 {
			for _, h := range hot {
				mustGetEqual(t, s, h, payload(h, 3000))
			}
		}
	}
	if got := s.fileOpens.Load(); got != uint64(len(keys)) {
		t.Fatalf("%d opens for a scan of %d chunks beside a hot set: the hot set was pushed out", got, len(keys))
	}
	for round := range 5 {
		for _, k := range keys {
			mustGetEqual(t, s, k, payload(k, 3000))
			if n := openFDs(t) - before; n > store+limit {
				t.Fatalf("round %d: %d descriptors open, want at most %d", round, n, store+limit)
			}
		}
	}
	if st := s.Stats(); st.OpenFiles != limit {
		t.Fatalf("%d descriptors cached, want %d", st.OpenFiles, limit)
	}
	checkQuiescent(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.checkClosed(); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open after Close, %d before Open", after, before)
	}
}

// TestCachedDescriptorNotClosedUnderReader: the cache evicts a descriptor
// while a reader is using it. It must stay open until the reader is done:
// closed early, its number would be reused by the next open and the
// reader would read another chunk's file. Then it must be closed.
func TestCachedDescriptorNotClosedUnderReader(t *testing.T) {
	cfg := testConfig(t, 1<<20)
	cfg.OpenFiles = 1
	s := openStore(t, cfg)
	ctx := context.Background()
	a := testKey(1, 0)
	mustPut(t, s, a, payload(a, 5000))
	others := make([]Key, 64)
	for i := range others {
		others[i] = testKey(uint64(i+2), 0)
		mustPut(t, s, others[i], payload(others[i], 5000))
	}
	mustGetEqual(t, s, a, payload(a, 5000)) // A's descriptor is cached
	s.mu.RLock()
	ea := s.entries[a]
	s.mu.RUnlock()
	fa := ea.file.Load()
	if fa == nil {
		t.Fatal("A's descriptor not cached")
	}

	holding, releaseOnce := blockReadsOf(s, a)
	defer releaseOnce()
	readDone := make(chan error, 1)
	go func() {
		got, err := s.Get(ctx, a, nil)
		if err == nil && string(got) != string(payload(a, 5000)) {
			err = errors.New("reader of A got wrong bytes")
		}
		readDone <- err
	}()
	<-holding
	// Read other chunks until the cache has let go of A's descriptor
	// (the admission throttle lets one newcomer in every admitEvery
	// misses); each of them opens a file, and a freed fd number would be
	// reused by one of these opens.
	for i := 0; ea.file.Load() != nil; i++ {
		if i == len(others) {
			t.Fatal("the cache never evicted A's descriptor")
		}
		mustGetEqual(t, s, others[i], payload(others[i], 5000))
	}
	if n := fa.refs.Load(); n != 1 {
		t.Fatalf("evicted descriptor in use has %d references, want the reader's 1", n)
	}
	if _, err := unix.FcntlInt(uintptr(fa.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("A's descriptor closed under its reader: %v", err)
	}
	releaseOnce()
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	if n := fa.refs.Load(); n != 0 {
		t.Fatalf("descriptor left with %d references after its reader", n)
	}
	checkQuiescent(t, s)
}

// TestOpenFilesWithinRlimit: the cache takes at most half of the
// RLIMIT_NOFILE soft limit, whatever OpenFiles says; and when the process
// runs out of descriptors anyway, a read sheds cached ones and succeeds.
func TestOpenFilesWithinRlimit(t *testing.T) {
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	soft := uint64(openFDs(t) + 200)
	if soft > saved.Cur {
		t.Skipf("RLIMIT_NOFILE soft limit %d too low for this test", saved.Cur)
	}
	lowered := saved
	lowered.Cur = soft
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, 4<<20)
	cfg.OpenFiles = DefaultOpenFiles
	s := openStore(t, cfg)
	if want := int(soft / 2); s.files.limit != want {
		t.Fatalf("open-file limit %d under RLIMIT_NOFILE %d, want %d", s.files.limit, soft, want)
	}
	keys := make([]Key, 300) // more than the limit
	for i := range keys {
		keys[i] = testKey(uint64(i), 0)
		mustPut(t, s, keys[i], payload(keys[i], 100))
	}
	for range 2 {
		for _, k := range keys {
			mustGetEqual(t, s, k, payload(k, 100))
		}
	}
	cached := s.Stats().OpenFiles
	if cached != s.files.limit {
		t.Fatalf("%d descriptors cached, want the limit %d", cached, s.files.limit)
	}
	// Use up every descriptor left, read a chunk whose descriptor is not
	// cached, and give them back.
	var hog []int
	for {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if err != unix.EMFILE {
				t.Fatalf("open %s: %v", os.DevNull, err)
			}
			break
		}
		hog = append(hog, fd)
	}
	var uncached Key
	s.mu.RLock()
	for _, k := range keys {
		if s.entries[k].file.Load() == nil {
			uncached = k
			break
		}
	}
	s.mu.RUnlock()
	got, err := s.Get(context.Background(), uncached, nil)
	for _, fd := range hog {
		unix.Close(fd) //nolint:errcheck // /dev/null
	}
	if err != nil {
		t.Fatalf("read with no descriptor left: %v", err)
	}
	if string(got) != string(payload(uncached, 100)) {
		t.Fatal("wrong bytes")
	}
	if st := s.Stats(); st.OpenFiles > cached-cached/2+1 {
		t.Fatalf("%d descriptors cached after running out, had %d: none shed", st.OpenFiles, cached)
	}
	checkQuiescent(t, s)
}
