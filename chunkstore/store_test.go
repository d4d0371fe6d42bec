package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/rs/zerolog"
)

func TestPutGetRoundTrip(t *testing.T) {
	s := openStore(t, testConfig(t, 1<<20))
	for _, n := range []int{0, 1, 100, 4096 - headerSize, 4096, 64 << 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			k := testKey(1, uint64(n))
			data := payload(k, n)
			mustPut(t, s, k, data)
			mustGetEqual(t, s, k, data)

			// A big enough dst is filled in place: no copy, no allocation.
			dst := make([]byte, 3, 3+n)
			out, err := s.Get(context.Background(), k, dst)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 3+n || string(out[3:]) != string(data) {
				t.Fatalf("Get appended %d bytes, want %d", len(out)-3, n)
			}
			if n > 0 && &out[0] != &dst[0] {
				t.Fatal("Get reallocated a destination that was big enough")
			}
		})
	}
	checkQuiescent(t, s)
}

func TestReadAt(t *testing.T) {
	s := openStore(t, testConfig(t, 1<<20))
	k := testKey(2, 0)
	data := payload(k, 10000)
	mustPut(t, s, k, data)
	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantEOF bool
	}{
		{"whole", 0, 10000, 10000, false},
		{"whole into bigger buffer", 0, 20000, 10000, true},
		{"head", 0, 100, 100, false},
		{"middle", 4000, 3000, 3000, false},
		{"tail exact", 9000, 1000, 1000, false},
		{"tail short", 9000, 5000, 1000, true},
		{"at end", 10000, 10, 0, true},
		{"past end", 20000, 10, 0, true},
		{"empty", 5, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := s.ReadAt(context.Background(), k, p, tc.off)
			if n != tc.wantN {
				t.Fatalf("n = %d, want %d (err %v)", n, tc.wantN, err)
			}
			if tc.wantEOF != (err == io.EOF) || (!tc.wantEOF && err != nil) {
				t.Fatalf("err = %v, want EOF %v", err, tc.wantEOF)
			}
			if n > 0 && string(p[:n]) != string(data[tc.off:tc.off+int64(n)]) {
				t.Fatal("wrong bytes")
			}
		})
	}
	if _, err := s.ReadAt(context.Background(), k, make([]byte, 1), -1); err == nil {
		t.Fatal("negative offset accepted")
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name string
		op   func(s *Store) error
		want error
	}{
		{"get missing", func(s *Store) error { _, err := s.Get(ctx, testKey(9, 9), nil); return err }, ErrNotFound},
		{"read missing", func(s *Store) error { _, err := s.ReadAt(ctx, testKey(9, 9), make([]byte, 1), 0); return err }, ErrNotFound},
		{"too large", func(s *Store) error { return s.Put(ctx, testKey(1, 1), make([]byte, 64<<10+1)) }, ErrTooLarge},
		{"put cancelled", func(s *Store) error { return s.Put(cancelled, testKey(1, 1), []byte("x")) }, context.Canceled},
		{"get cancelled", func(s *Store) error { _, err := s.Get(cancelled, testKey(1, 1), nil); return err }, context.Canceled},
		{"remove cancelled", func(s *Store) error { return s.Remove(cancelled, testKey(1, 1)) }, context.Canceled},
		{"no space", func(s *Store) error {
			s.Pin(1)
			for i := range 100 {
				if err := s.Put(ctx, testKey(1, uint64(i)), make([]byte, 4000)); err != nil {
					return err
				}
			}
			return nil
		}, ErrNoSpace},
		{"get after close", func(s *Store) error { s.Close(); _, err := s.Get(ctx, testKey(1, 1), nil); return err }, ErrClosed},
		{"put after close", func(s *Store) error { s.Close(); return s.Put(ctx, testKey(1, 1), nil) }, ErrClosed},
		{"remove after close", func(s *Store) error { s.Close(); return s.Remove(ctx, testKey(1, 1)) }, ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, testConfig(t, 64<<10+4096))
			if err := tc.op(s); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if errors.Is(tc.want, ErrClosed) {
				return
			}
			checkQuiescent(t, s)
		})
	}
}

func TestPutExistingKeyIsNoop(t *testing.T) {
	s := openStore(t, testConfig(t, 1<<20))
	k := testKey(3, 0)
	mustPut(t, s, k, payload(k, 500))
	mustPut(t, s, k, payload(k, 500))
	if st := s.Stats(); st.Puts != 1 || st.Chunks != 1 {
		t.Fatalf("stats after two Puts of one key: %+v", st)
	}
}

func TestOpenRefusesForeignOrLockedDir(t *testing.T) {
	t.Run("foreign files", func(t *testing.T) {
		cfg := testConfig(t, 1<<20)
		precious := filepath.Join(cfg.Dir, "thesis.tex")
		if err := os.WriteFile(precious, []byte("do not delete"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(cfg, zerolog.Nop()); !errors.Is(err, ErrNotStore) {
			t.Fatalf("Open = %v, want ErrNotStore", err)
		}
		if _, err := os.Stat(precious); err != nil {
			t.Fatalf("foreign file touched: %v", err)
		}
	})
	t.Run("other format", func(t *testing.T) {
		cfg := testConfig(t, 1<<20)
		if err := os.WriteFile(filepath.Join(cfg.Dir, formatFile), []byte("nascache chunkstore 99\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(cfg, zerolog.Nop()); !errors.Is(err, ErrNotStore) {
			t.Fatalf("Open = %v, want ErrNotStore", err)
		}
	})
	t.Run("locked", func(t *testing.T) {
		cfg := testConfig(t, 1<<20)
		s := openStore(t, cfg)
		if _, err := Open(cfg, zerolog.Nop()); !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open = %v, want ErrLocked", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(cfg, zerolog.Nop())
		if err != nil {
			t.Fatalf("Open after Close: %v", err)
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		if _, err := Open(Config{}, zerolog.Nop()); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("Open = %v, want ErrInvalidConfig", err)
		}
	})
}

// TestCapacityUnderConcurrentPuts runs rounds of concurrent Puts, Gets and
// Removes of mixed sizes into a store far smaller than the data. While they
// run, each worker verifies the store's accounting under its lock after
// each of its Puts; after each
// round, the files on disk are compared with that accounting.
func TestCapacityUnderConcurrentPuts(t *testing.T) {
	const capacity = 256 << 10
	s := openStore(t, testConfig(t, capacity))
	ctx := context.Background()
	sizes := []int{0, 1000, 4096 - headerSize, 4096 - headerSize + 1, 9000, 20000, 64 << 10}
	for round := range 3 {
		var wg sync.WaitGroup
		errc := make(chan error, 64)
		for w := range 6 {
			wg.Go(func() {
				for i := range 80 {
					k := testKey(uint64(w+1), uint64(round*1000+i))
					data := payload(k, sizes[(w+i)%len(sizes)])
					if err := s.Put(ctx, k, data); err != nil {
						errc <- err
						return
					}
					// The accounting holds while the other workers are
					// in the middle of their Puts.
					if err := s.checkInvariants(); err != nil {
						errc <- err
						return
					}
					// Read back a recent chunk: it may have been evicted by
					// now (a miss), but if it is served it must be right.
					old := testKey(uint64(w+1), uint64(round*1000+i/2))
					got, err := s.Get(ctx, old, nil)
					switch {
					case errors.Is(err, ErrNotFound):
					case err != nil:
						errc <- err
						return
					case string(got) != string(payload(old, sizes[(w+i/2)%len(sizes)])):
						errc <- fmt.Errorf("chunk %v served wrong bytes", old)
						return
					}
					if i%17 == 0 {
						if err := s.Remove(ctx, old); err != nil {
							errc <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		checkQuiescent(t, s)
	}
	st := s.Stats()
	if st.Evictions == 0 || st.UsedBytes > capacity {
		t.Fatalf("expected evictions within capacity, got %+v", st)
	}
}

// TestCapacityEveryPut checks the disk against the capacity after every
// single Put of a sequential fill four times the capacity.
func TestCapacityEveryPut(t *testing.T) {
	const capacity = 100 << 10
	s := openStore(t, testConfig(t, capacity))
	for i := range 100 {
		k := testKey(4, uint64(i))
		mustPut(t, s, k, payload(k, 3000+i*37))
		checkQuiescent(t, s)
	}
}

// TestScanResistance reads a hot set, then writes a one-pass scan of three
// times the capacity. Chunks read again after they came in must all survive
// the scan; chunks never read again must not (the control row, which shows
// the test can tell the difference).
func TestScanResistance(t *testing.T) {
	const (
		chunk    = 4096 - headerSize // one block each
		capacity = 50 * 4096
		hot      = 10
		scan     = 150
	)
	tests := []struct {
		name         string
		readsBefore  int  // reads of each hot chunk before the scan
		readsDuring  bool // also read the hot set every 10 scan chunks
		wantHotKept  bool
		wantHotHits  bool
		wantEvictMin uint64
	}{
		{"read once before scan", 1, false, true, true, scan - (50 - hot)},
		{"read often before scan", 5, false, true, true, scan - (50 - hot)},
		{"read during scan", 1, true, true, true, scan - (50 - hot)},
		{"never read again (control)", 0, false, false, false, scan - (50 - hot)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, testConfig(t, capacity))
			ctx := context.Background()
			for i := range hot {
				k := testKey(100, uint64(i))
				mustPut(t, s, k, payload(k, chunk))
			}
			readHot := func() {
				for i := range hot {
					k := testKey(100, uint64(i))
					if _, err := s.Get(ctx, k, nil); err != nil {
						t.Fatalf("hot chunk %d: %v", i, err)
					}
				}
			}
			for range tc.readsBefore {
				readHot()
			}
			for i := range scan {
				k := testKey(200+uint64(i), 0)
				mustPut(t, s, k, payload(k, chunk))
				if tc.readsDuring && i%10 == 9 {
					readHot()
				}
			}
			kept := 0
			for i := range hot {
				if s.Contains(testKey(100, uint64(i))) {
					kept++
				}
			}
			if tc.wantHotKept && kept != hot {
				t.Fatalf("%d of %d hot chunks survived the scan", kept, hot)
			}
			if !tc.wantHotKept && kept != 0 {
				t.Fatalf("%d unread chunks survived a scan of 3x the capacity", kept)
			}
			st := s.Stats()
			if st.Evictions < tc.wantEvictMin {
				t.Fatalf("evictions = %d, want >= %d", st.Evictions, tc.wantEvictMin)
			}
			checkQuiescent(t, s)
		})
	}
}

// TestGhostPromotes: a chunk evicted from probation and put again soon
// after goes straight to the main queue.
func TestGhostPromotes(t *testing.T) {
	const chunk = 4096 - headerSize
	s := openStore(t, testConfig(t, 20*4096))
	first := testKey(300, 0)
	mustPut(t, s, first, payload(first, chunk))
	for i := range 40 {
		k := testKey(301+uint64(i), 0)
		mustPut(t, s, k, payload(k, chunk))
	}
	if s.Contains(first) {
		t.Fatal("unread chunk survived a scan of twice the capacity")
	}
	mustPut(t, s, first, payload(first, chunk))
	s.mu.RLock()
	q := s.entries[first].queue
	s.mu.RUnlock()
	if q != queueMain {
		t.Fatalf("re-put chunk went to queue %d, want main", q)
	}
}

func TestCorruptionDetected(t *testing.T) {
	const n = 5000
	other := testKey(7, 99)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"flip data byte", func(t *testing.T, path string) { flipByte(t, path, headerSize+1234) }},
		{"flip last data byte", func(t *testing.T, path string) { flipByte(t, path, headerSize+n-1) }},
		{"flip magic", func(t *testing.T, path string) { flipByte(t, path, 0) }},
		{"flip inode", func(t *testing.T, path string) { flipByte(t, path, offIno) }},
		{"flip data crc", func(t *testing.T, path string) { flipByte(t, path, offDataCRC) }},
		{"flip header crc", func(t *testing.T, path string) { flipByte(t, path, offHeaderCRC) }},
		{"truncate into data", func(t *testing.T, path string) { truncate(t, path, headerSize+n/2) }},
		{"truncate into header", func(t *testing.T, path string) { truncate(t, path, 10) }},
		{"zero-filled", func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, headerSize+n), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"another chunk's file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, chunkFile(other, payload(other, n)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		for _, api := range []string{"Get", "ReadAt"} {
			t.Run(tc.name+"/"+api, func(t *testing.T) {
				t.Parallel()
				s := openStore(t, testConfig(t, 1<<20))
				ctx := context.Background()
				k := testKey(7, 1)
				data := payload(k, n)
				mustPut(t, s, k, data)
				path := s.path(k)
				tc.damage(t, path)
				var err error
				if api == "Get" {
					_, err = s.Get(ctx, k, nil)
				} else {
					_, err = s.ReadAt(ctx, k, make([]byte, 10), 100)
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s of damaged chunk: err = %v, want ErrCorrupt", api, err)
				}
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Fatalf("damaged file still there: %v", err)
				}
				if _, err := s.Get(ctx, k, nil); !errors.Is(err, ErrNotFound) {
					t.Fatalf("second Get: %v, want ErrNotFound", err)
				}
				if st := s.Stats(); st.Corrupt != 1 || st.Chunks != 0 || st.UsedBytes != 0 {
					t.Fatalf("stats after corruption: %+v", st)
				}
				// Refetched and stored again, it is served.
				mustPut(t, s, k, data)
				mustGetEqual(t, s, k, data)
				checkQuiescent(t, s)
			})
		}
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// chunkFile is the file image of a chunk.
func chunkFile(k Key, data []byte) []byte {
	var hdr [headerSize]byte
	encodeHeader(&hdr, k, data)
	return append(hdr[:], data...)
}

// TestCrashLeftovers plants what a crash can leave (a temp file, torn
// chunk files) and some debris, then reopens.
func TestCrashLeftovers(t *testing.T) {
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("VerifyHeadersOnOpen=%v", verify), func(t *testing.T) {
			cfg := testConfig(t, 1<<20)
			cfg.VerifyHeadersOnOpen = verify
			s, err := Open(cfg, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			good := make([]Key, 10)
			for i := range good {
				good[i] = testKey(8, uint64(i))
				mustPut(t, s, good[i], payload(good[i], 3000))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			plant := func(rel string, b []byte) string {
				p := filepath.Join(cfg.Dir, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			torn, tornHeader := testKey(9, 1), testKey(9, 2)
			wrongDir := testKey(9, 3)
			debris := []string{
				plant(filepath.Join(tmpDir, good[0].fileName()+".123"), chunkFile(good[0], payload(good[0], 3000))[:1000]),
				plant(tornHeader.relPath(), chunkFile(tornHeader, payload(tornHeader, 3000))[:10]),
				plant(filepath.Join(chunksDir, fanoutName((fanout(wrongDir)+1)%256), wrongDir.fileName()),
					chunkFile(wrongDir, payload(wrongDir, 100))),
				plant(filepath.Join(chunksDir, "00", "not-a-chunk"), []byte("x")),
				plant(filepath.Join(chunksDir, "zz", "x"), []byte("x")),
				plant(filepath.Join(chunksDir, "stray"), []byte("x")),
			}
			tornPath := plant(torn.relPath(), chunkFile(torn, payload(torn, 3000))[:headerSize+1500])

			s = openStore(t, cfg)
			for _, p := range debris {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s survived Open: %v", p, err)
				}
			}
			_, err = os.Stat(tornPath)
			if verify != os.IsNotExist(err) {
				t.Errorf("torn chunk after Open with verify=%v: stat err %v", verify, err)
			}
			_, err = s.Get(context.Background(), torn, nil)
			if want := map[bool]error{false: ErrCorrupt, true: ErrNotFound}[verify]; !errors.Is(err, want) {
				t.Errorf("Get torn chunk = %v, want %v", err, want)
			}
			for _, k := range good {
				mustGetEqual(t, s, k, payload(k, 3000))
			}
			checkQuiescent(t, s)
		})
	}
}

// TestRestartWarm: a reopened store serves what it held, and reads change
// nothing on disk.
func TestRestartWarm(t *testing.T) {
	cfg := testConfig(t, 1<<20)
	s, err := Open(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]Key, 50)
	for i := range keys {
		keys[i] = testKey(10+uint64(i%5), uint64(i))
		mustPut(t, s, keys[i], payload(keys[i], 1000+i*100))
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snapshot := dirSnapshot(t, cfg.Dir)

	s = openStore(t, cfg)
	after := s.Stats()
	if after.Chunks != before.Chunks || after.UsedBytes != before.UsedBytes {
		t.Fatalf("after restart %d chunks / %d bytes, before %d / %d",
			after.Chunks, after.UsedBytes, before.Chunks, before.UsedBytes)
	}
	for range 3 {
		for i, k := range keys {
			mustGetEqual(t, s, k, payload(k, 1000+i*100))
		}
	}
	if st := s.Stats(); st.Hits != 150 || st.Misses != 0 {
		t.Fatalf("hits %d misses %d, want 150 / 0", st.Hits, st.Misses)
	}
	if got := dirSnapshot(t, cfg.Dir); got != snapshot {
		t.Fatalf("reads changed the directory:\nbefore\n%s\nafter\n%s", snapshot, got)
	}
	checkQuiescent(t, s)
}

// dirSnapshot lists every file with its size and modification time.
func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []byte
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			out = fmt.Appendf(out, "%s %d %d\n", path, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestRestartSmallerCapacity: reopening with less capacity evicts down to it.
func TestRestartSmallerCapacity(t *testing.T) {
	cfg := testConfig(t, 400<<10)
	s, err := Open(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 90 {
		k := testKey(11, uint64(i))
		mustPut(t, s, k, payload(k, 4000))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mtimes := map[Key]int64{}
	for i := range 90 {
		k := testKey(11, uint64(i))
		info, err := os.Stat(s.path(k))
		if err != nil {
			t.Fatal(err)
		}
		mtimes[k] = info.ModTime().UnixNano()
	}
	cfg.CapacityBytes = 100 << 10
	s = openStore(t, cfg)
	if st := s.Stats(); st.UsedBytes > cfg.CapacityBytes || st.Chunks != 25 || st.Evictions != 65 {
		t.Fatalf("after shrinking: %+v", st)
	}
	// The newest chunks (by mtime) are the ones kept.
	oldestKept, newestEvicted := int64(1<<63-1), int64(-1<<63)
	for k, m := range mtimes {
		if s.Contains(k) {
			oldestKept = min(oldestKept, m)
			mustGetEqual(t, s, k, payload(k, 4000))
		} else {
			newestEvicted = max(newestEvicted, m)
		}
	}
	if newestEvicted > oldestKept {
		t.Fatalf("evicted a chunk of mtime %d but kept one of %d", newestEvicted, oldestKept)
	}
	checkQuiescent(t, s)
}

func TestPinSurvivesPressure(t *testing.T) {
	const chunk = 4096 - headerSize
	s := openStore(t, testConfig(t, 50*4096))
	ctx := context.Background()
	const pinned = 7
	for i := range 10 {
		k := testKey(pinned, uint64(i))
		mustPut(t, s, k, payload(k, chunk))
	}
	s.Pin(pinned) // pins present chunks ...
	for i := 10; i < 20; i++ {
		k := testKey(pinned, uint64(i))
		mustPut(t, s, k, payload(k, chunk)) // ... and future ones
	}
	for i := range 150 {
		k := testKey(500+uint64(i), 0)
		mustPut(t, s, k, payload(k, chunk))
	}
	for i := range 20 {
		k := testKey(pinned, uint64(i))
		mustGetEqual(t, s, k, payload(k, chunk))
	}
	if st := s.Stats(); st.PinnedBytes != 20*4096 {
		t.Fatalf("pinned bytes %d, want %d", st.PinnedBytes, 20*4096)
	}
	checkQuiescent(t, s)

	// Unpinned, they compete again: new chunks that are read twice
	// (so that they reach the main queue) push them out.
	s.Unpin(pinned)
	for i := range 150 {
		k := testKey(700+uint64(i), 0)
		mustPut(t, s, k, payload(k, chunk))
		mustGetEqual(t, s, k, payload(k, chunk))
		mustGetEqual(t, s, k, payload(k, chunk))
	}
	kept := 0
	for i := range 20 {
		if s.Contains(testKey(pinned, uint64(i))) {
			kept++
		}
	}
	if kept == 20 {
		t.Fatal("unpinned chunks were never evicted")
	}
	if st := s.Stats(); st.PinnedBytes != 0 {
		t.Fatalf("pinned bytes %d after Unpin", st.PinnedBytes)
	}
	// Remove still removes pinned chunks.
	s.Pin(pinned)
	if _, err := s.RemoveInode(ctx, pinned); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PinnedBytes != 0 {
		t.Fatalf("pinned bytes %d after RemoveInode", st.PinnedBytes)
	}
	checkQuiescent(t, s)
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	v2 := VersionOf([]byte("version 2"))
	tests := []struct {
		name     string
		remove   func(s *Store) (int, error)
		wantN    int
		wantLeft []Key
	}{
		{"one key", func(s *Store) (int, error) { return 1, s.Remove(ctx, testKey(12, 1)) }, 1,
			[]Key{testKey(12, 0), {Ino: 12, Version: v2, Index: 0}, testKey(13, 0)}},
		{"absent key", func(s *Store) (int, error) { return 0, s.Remove(ctx, testKey(12, 9)) }, 0,
			[]Key{testKey(12, 0), testKey(12, 1), {Ino: 12, Version: v2, Index: 0}, testKey(13, 0)}},
		{"inode", func(s *Store) (int, error) { return s.RemoveInode(ctx, 12) }, 3,
			[]Key{testKey(13, 0)}},
		{"stale versions", func(s *Store) (int, error) { return s.RemoveStale(ctx, 12, v2) }, 2,
			[]Key{{Ino: 12, Version: v2, Index: 0}, testKey(13, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, testConfig(t, 1<<20))
			all := []Key{testKey(12, 0), testKey(12, 1), {Ino: 12, Version: v2, Index: 0}, testKey(13, 0)}
			for _, k := range all {
				mustPut(t, s, k, payload(k, 100))
			}
			n, err := tc.remove(s)
			if err != nil || n != tc.wantN {
				t.Fatalf("removed %d (%v), want %d", n, err, tc.wantN)
			}
			left := map[Key]bool{}
			for _, k := range tc.wantLeft {
				left[k] = true
			}
			for _, k := range all {
				if s.Contains(k) != left[k] {
					t.Errorf("%v present = %v, want %v", k, s.Contains(k), left[k])
				}
			}
			checkQuiescent(t, s)
		})
	}
}

// TestRemoveWhileFilling: a Remove that comes in while the chunk is being
// written wins: the chunk never becomes readable and its file is deleted.
func TestRemoveWhileFilling(t *testing.T) {
	s := openStore(t, testConfig(t, 1<<20))
	ctx := context.Background()
	k := testKey(14, 0)
	inWrite := make(chan struct{})
	release := make(chan struct{})
	s.hookBeforeRename = func(Key) {
		close(inWrite)
		<-release
	}
	var wg sync.WaitGroup
	var putErr error
	wg.Go(func() { putErr = s.Put(ctx, k, payload(k, 100)) })
	<-inWrite
	if err := s.Remove(ctx, k); err != nil {
		t.Fatal(err)
	}
	if s.Contains(k) {
		t.Fatal("chunk readable while being written")
	}
	close(release)
	wg.Wait()
	if putErr != nil {
		t.Fatal(putErr)
	}
	if s.Contains(k) {
		t.Fatal("removed chunk readable after its Put finished")
	}
	checkQuiescent(t, s)
}

// TestCloseWaitsForPut: Close returns only after an in-flight Put ends.
// synctest.Wait makes "Close is blocked" an observed fact, not a guess.
func TestCloseWaitsForPut(t *testing.T) {
	cfg := testConfig(t, 1<<20)
	k := testKey(15, 0)
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		inWrite := make(chan struct{})
		release := make(chan struct{})
		s.hookBeforeRename = func(Key) {
			close(inWrite)
			<-release
		}
		putDone := make(chan error, 1)
		go func() { putDone <- s.Put(context.Background(), k, payload(k, 100)) }()
		<-inWrite
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		synctest.Wait() // both goroutines are now durably blocked
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a Put was in flight", err)
		default:
		}
		if err := s.Put(context.Background(), testKey(15, 1), nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Put during Close = %v, want ErrClosed", err)
		}
		close(release)
		if err := <-putDone; err != nil {
			t.Fatal(err)
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
	s := openStore(t, cfg)
	mustGetEqual(t, s, k, payload(k, 100))
}

// TestConcurrentReaders: many readers of the same and of different chunks,
// while writers evict under them; every byte served is right.
func TestConcurrentReaders(t *testing.T) {
	const chunk = 8000
	s := openStore(t, testConfig(t, 200<<10))
	ctx := context.Background()
	for i := range 10 {
		k := testKey(16, uint64(i))
		mustPut(t, s, k, payload(k, chunk))
	}
	errc := make(chan error, 16)
	var wg sync.WaitGroup
	for r := range 8 {
		wg.Go(func() {
			buf := make([]byte, 0, chunk)
			for i := range 300 {
				k := testKey(16, uint64((r+i)%12))
				got, err := s.Get(ctx, k, buf[:0])
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				if string(got) != string(payload(k, chunk)) {
					errc <- fmt.Errorf("reader %d: wrong bytes for %v", r, k)
					return
				}
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := range 100 {
				k := testKey(17+uint64(w), uint64(i))
				if err := s.Put(ctx, k, payload(k, chunk)); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	checkQuiescent(t, s)
}
