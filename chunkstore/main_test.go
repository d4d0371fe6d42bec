package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestMain fails the run if a goroutine started by a test of this package
// outlives it (the store starts only the scan workers of Open, and waits
// for them).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutine leak:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines gives goroutines that are returning a chance to finish
// (yielding, never sleeping) and reports any that stay.
func waitGoroutines() string {
	var leaked []string
	for range 10000 {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for i, g := range strings.Split(string(buf), "\n\n") {
			if i == 0 { // this goroutine
				continue
			}
			if strings.Contains(g, "nascache/chunkstore") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		runtime.Gosched()
	}
	return strings.Join(leaked, "\n\n")
}

var v1 = VersionOf([]byte("version 1"))

func testKey(ino, index uint64) Key { return Key{Ino: ino, Version: v1, Index: index} }

// payload is the deterministic content of a test chunk.
func payload(k Key, n int) []byte {
	b := make([]byte, n)
	x := k.hash()
	for i := range b {
		if i%8 == 0 {
			x = mix64(x + uint64(i))
		}
		b[i] = byte(x >> (8 * (i % 8)))
	}
	return b
}

// testConfig is a small store: 4 KiB blocks, chunks up to 64 KiB.
func testConfig(t testing.TB, capacity int64) Config {
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.CapacityBytes = capacity
	cfg.MaxChunkBytes = 64 << 10
	return cfg
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := s.checkClosed(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func mustPut(t testing.TB, s *Store, k Key, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, data); err != nil {
		t.Fatalf("Put %v: %v", k, err)
	}
}

// mustGetEqual fails unless the chunk under k is exactly want.
func mustGetEqual(t testing.TB, s *Store, k Key, want []byte) {
	t.Helper()
	got, err := s.Get(context.Background(), k, nil)
	if err != nil {
		t.Fatalf("Get %v: %v", k, err)
	}
	if string(got) != string(want) {
		t.Fatalf("Get %v: %d bytes differ from the %d put", k, len(got), len(want))
	}
}

// diskUsage walks the store directory: the chunk files' total size, their
// total charge, their count, and the number of temp files.
type diskUsage struct {
	sizeBytes, chargedBytes int64
	chunks, temps           int
}

func measureDisk(t testing.TB, cfg Config) diskUsage {
	t.Helper()
	var u diskUsage
	for _, sub := range []string{chunksDir, tmpDir} {
		err := filepath.WalkDir(filepath.Join(cfg.Dir, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			u.sizeBytes += info.Size()
			u.chargedBytes += (info.Size() + cfg.BlockBytes - 1) &^ (cfg.BlockBytes - 1)
			if sub == tmpDir {
				u.temps++
			} else {
				u.chunks++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", sub, err)
		}
	}
	return u
}

// checkQuiescent compares the store's accounting with the disk when no
// operation is in flight.
func checkQuiescent(t testing.TB, s *Store) {
	t.Helper()
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	if err := s.checkAtRest(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	u := measureDisk(t, s.cfg)
	if u.sizeBytes > s.cfg.CapacityBytes || u.chargedBytes > s.cfg.CapacityBytes {
		t.Fatalf("disk holds %d bytes (%d charged), capacity %d", u.sizeBytes, u.chargedBytes, s.cfg.CapacityBytes)
	}
	if u.chargedBytes != st.UsedBytes || u.chunks != st.Chunks || u.temps != 0 {
		t.Fatalf("disk has %d chunks, %d charged bytes, %d temps; store says %d chunks, %d used bytes",
			u.chunks, u.chargedBytes, u.temps, st.Chunks, st.UsedBytes)
	}
}

// checkAtRest verifies what must hold when no operation is in flight: no
// reader, no fill, no removal, nothing unlinked still open, the only
// holds on entries those of their cached descriptors (no reader left on
// one), and the charge of every chunk back to exactly the sum of the
// readable chunks (plus files that could not be deleted).
func (s *Store) checkAtRest() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var errs []error
	var ready int64
	for k, e := range s.entries {
		if e.state != stateReady {
			errs = append(errs, fmt.Errorf("entry %v in state %d at rest", k, e.state))
		}
		want := int64(0)
		if f := e.file.Load(); f != nil {
			want = openReader
			if n := f.refs.Load(); n != 1 {
				errs = append(errs, fmt.Errorf("entry %v: cached descriptor has %d references at rest, want the cache's 1", k, n))
			}
		}
		if n := e.opens.Load(); n != want {
			errs = append(errs, fmt.Errorf("entry %v: opens word %d at rest, want %d", k, n, want))
		}
		ready += e.charge
	}
	if len(s.unlinkedOpen) != 0 || s.openBytes != 0 || s.fillingBytes != 0 || s.removingBytes != 0 {
		errs = append(errs, fmt.Errorf("at rest: %d unlinked open entries (%d bytes), %d filling, %d removing",
			len(s.unlinkedOpen), s.openBytes, s.fillingBytes, s.removingBytes))
	}
	if s.usedBytes != ready+s.stuckBytes {
		errs = append(errs, fmt.Errorf("at rest: used %d != chunks %d + stuck %d", s.usedBytes, ready, s.stuckBytes))
	}
	return errors.Join(errs...)
}

// checkInvariants verifies the accounting under the lock; safe to call
// concurrently with any operation.
func (s *Store) checkInvariants() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var errs []error
	if s.usedBytes > s.cfg.CapacityBytes {
		errs = append(errs, fmt.Errorf("used %d > capacity %d", s.usedBytes, s.cfg.CapacityBytes))
	}
	if s.capBytes > s.cfg.CapacityBytes || s.capBytes < 0 {
		errs = append(errs, fmt.Errorf("effective capacity %d outside 0..%d", s.capBytes, s.cfg.CapacityBytes))
	}
	if s.adapting.Load() != (s.capBytes < s.cfg.CapacityBytes) {
		errs = append(errs, fmt.Errorf("adapting %v with effective capacity %d of %d", s.adapting.Load(), s.capBytes, s.cfg.CapacityBytes))
	}
	errs = append(errs, s.checkFilesLocked()...)
	var ready, filling, removing, open int64
	for k, e := range s.entries {
		if e.key != k || s.byIno[k.Ino][k] != e {
			errs = append(errs, fmt.Errorf("entry %v indexed wrongly", k))
		}
		// An indexed entry's file is not unlinked yet (the bit is set
		// in the critical section that unindexes it), and only ready
		// entries are looked up, so only they and entries being removed
		// can have readers.
		opens := e.opens.Load()
		if opens&unlinkedBit != 0 || opens < 0 {
			errs = append(errs, fmt.Errorf("indexed entry %v: opens word %d", k, opens))
		}
		switch e.state {
		case stateReady:
			ready += e.charge
			if e.queue == queueNone {
				errs = append(errs, fmt.Errorf("ready entry %v in no queue", k))
			}
		case stateFilling:
			filling += e.charge
			if opens != 0 {
				errs = append(errs, fmt.Errorf("filling entry %v has %d readers", k, opens/openReader))
			}
			if e.file.Load() != nil {
				errs = append(errs, fmt.Errorf("filling entry %v has a cached descriptor", k))
			}
		case stateRemoving:
			removing += e.charge
		}
	}
	// Unlinked entries still open: out of the index, bit set. The word
	// may already be exactly unlinkedBit: the last reader has closed and
	// is waiting for the write lock to release the charge.
	for e := range s.unlinkedOpen {
		open += e.charge
		if s.entries[e.key] == e {
			errs = append(errs, fmt.Errorf("unlinked entry %v still indexed", e.key))
		}
		if opens := e.opens.Load(); opens&unlinkedBit == 0 || opens < unlinkedBit {
			errs = append(errs, fmt.Errorf("unlinked open entry %v: opens word %d", e.key, opens))
		}
		// Removal takes the descriptor out of the cache before it
		// unlinks; a reader may still hold it (and then the entry).
		if e.file.Load() != nil {
			errs = append(errs, fmt.Errorf("unlinked entry %v still has a cached descriptor", e.key))
		}
	}
	if open != s.openBytes {
		errs = append(errs, fmt.Errorf("unlinked open entries hold %d bytes, counter %d", open, s.openBytes))
	}
	if q := s.small.bytes + s.main.bytes + s.pin.bytes; q != ready {
		errs = append(errs, fmt.Errorf("queues hold %d bytes, ready entries %d", q, ready))
	}
	if filling != s.fillingBytes || removing != s.removingBytes {
		errs = append(errs, fmt.Errorf("filling %d (counter %d), removing %d (counter %d)",
			filling, s.fillingBytes, removing, s.removingBytes))
	}
	if want := ready + s.fillingBytes + s.removingBytes + s.openBytes + s.stuckBytes; want != s.usedBytes {
		errs = append(errs, fmt.Errorf("used %d != ready %d + filling %d + removing %d + unlinked open %d + stuck %d",
			s.usedBytes, ready, s.fillingBytes, s.removingBytes, s.openBytes, s.stuckBytes))
	}
	for _, q := range []*fifo{&s.small, &s.main, &s.pin} {
		n, b := 0, int64(0)
		for e := q.head; e != nil; e = e.next {
			if e.queue != q.id {
				errs = append(errs, fmt.Errorf("entry %v in queue %d says %d", e.key, q.id, e.queue))
			}
			n++
			b += e.charge
		}
		if n != q.len || b != q.bytes {
			errs = append(errs, fmt.Errorf("queue %d: %d entries / %d bytes, counters %d / %d", q.id, n, b, q.len, q.bytes))
		}
	}
	return errors.Join(errs...)
}

// checkFilesLocked verifies the open-file cache; the caller holds s.mu
// (read side), which keeps installs out (they hold it too).
func (s *Store) checkFilesLocked() []error {
	var errs []error
	c := &s.files
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.slots) > c.limit {
		errs = append(errs, fmt.Errorf("open-file cache has %d slots, limit %d", len(c.slots), c.limit))
	}
	free := map[int]bool{}
	for _, i := range c.free {
		if free[i] || i >= len(c.slots) || c.slots[i].f != nil {
			errs = append(errs, fmt.Errorf("open-file cache: free slot %d listed twice, out of range or in use", i))
		}
		free[i] = true
	}
	for i, sl := range c.slots {
		switch {
		case sl.f == nil && !free[i]:
			errs = append(errs, fmt.Errorf("open-file cache: slot %d empty but not free", i))
		case sl.f != nil && (sl.f.slot != i || sl.f.e != sl.e):
			errs = append(errs, fmt.Errorf("open-file cache: slot %d holds a descriptor of slot %d", i, sl.f.slot))
		}
	}
	// Every installed descriptor is in its slot (removal takes it out of
	// the entry first, the slot after: the other way round may be seen)
	// and holds its entry like a reader.
	for k, e := range s.entries {
		f := e.file.Load()
		if f == nil {
			continue
		}
		if f.e != e || f.slot >= len(c.slots) || c.slots[f.slot].f != f {
			errs = append(errs, fmt.Errorf("entry %v: cached descriptor not in its slot", k))
		}
		if f.refs.Load() < 1 || e.opens.Load() < openReader {
			errs = append(errs, fmt.Errorf("entry %v: cached descriptor with %d references, opens word %d", k, f.refs.Load(), e.opens.Load()))
		}
	}
	return errs
}

// checkClosed verifies that a closed store has let go of every chunk
// descriptor and every hold.
func (s *Store) checkClosed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var errs []error
	for k, e := range s.entries {
		if e.file.Load() != nil || e.opens.Load() != 0 {
			errs = append(errs, fmt.Errorf("closed store: entry %v has descriptor %v, opens word %d", k, e.file.Load() != nil, e.opens.Load()))
		}
	}
	s.files.mu.Lock()
	if n := s.files.cachedLocked(); n != 0 {
		errs = append(errs, fmt.Errorf("closed store caches %d descriptors", n))
	}
	s.files.mu.Unlock()
	return errors.Join(errs...)
}
