package cachefs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/chunkstore"
	"github.com/nascache/nascache/meta"
)

// readOrigin counts the data reads and attribute fetches of the origin it
// wraps; onRead, if set, runs before each Read.
type readOrigin struct {
	backend.Origin
	reads    atomic.Int64
	getattrs atomic.Int64
	lookups  atomic.Int64
	readDirs atomic.Int64
	onRead   func(off uint64)
}

func (o *readOrigin) Lookup(ctx context.Context, cred backend.Cred, dir backend.Handle, name string) (backend.Handle, backend.Attr, error) {
	o.lookups.Add(1)
	return o.Origin.Lookup(ctx, cred, dir, name)
}

func (o *readOrigin) ReadDir(ctx context.Context, cred backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	o.readDirs.Add(1)
	return o.Origin.ReadDir(ctx, cred, dir, fn)
}

func (o *readOrigin) Read(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, error) {
	o.reads.Add(1)
	if o.onRead != nil {
		o.onRead(off)
	}
	return o.Origin.Read(ctx, cred, h, p, off)
}

// ReadAttr counts as a Read; the local origin under it returns the
// attributes after the read (the path that needs no GETATTR per fetch).
func (o *readOrigin) ReadAttr(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, backend.Attr, bool, error) {
	o.reads.Add(1)
	if o.onRead != nil {
		o.onRead(off)
	}
	return o.Origin.(*local.Origin).ReadAttr(ctx, cred, h, p, off)
}

// plainReads hides readOrigin's ReadAttr: fetches then check the version
// with a GETATTR.
type plainReads struct{ backend.Origin }

func (o *readOrigin) GetAttr(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.Attr, error) {
	o.getattrs.Add(1)
	return o.Origin.GetAttr(ctx, cred, h)
}

// chunkBytes is the chunk size of the data cache tests: small, so that a
// test file spans many chunks.
const chunkBytes = 4096

// cacheHarness is an FS with a data cache over a local origin.
type cacheHarness struct {
	fs     *cachefs.FS
	db     *meta.DB
	store  *chunkstore.Store
	origin *readOrigin
	dir    string // origin directory
	chunks string // chunk store directory
	dbPath string
	root   cachefs.NodeID
	cfg    cachefs.Config
	reg    *prometheus.Registry
}

type cacheOpts struct {
	capacityChunks int // 0: 1024
	readAhead      int // ReadAheadMaxChunks; 0: off
	consistency    cachefs.Consistency
	now            func() time.Time
	plainReads     bool // the origin has no ReadAttr
}

func newCacheHarness(t *testing.T, o cacheOpts) *cacheHarness {
	t.Helper()
	h := &cacheHarness{dir: t.TempDir(), chunks: t.TempDir(), dbPath: filepath.Join(t.TempDir(), "meta.db")}
	h.open(t, o)
	t.Cleanup(h.close)
	return h
}

// charge is what one full chunk costs in the store (block size 64).
const charge = 64 + chunkBytes

func (h *cacheHarness) open(t *testing.T, o cacheOpts) {
	t.Helper()
	var err error
	h.db, err = meta.Open(h.dbPath, meta.Options{Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	sc := chunkstore.DefaultConfig()
	sc.Dir = h.chunks
	sc.MaxChunkBytes = chunkBytes
	sc.BlockBytes = 64
	sc.SmallQueuePercent = 25
	if o.capacityChunks == 0 {
		o.capacityChunks = 1024
	}
	sc.CapacityBytes = int64(o.capacityChunks) * charge
	h.store, err = chunkstore.Open(sc, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	lo, err := local.New(h.dir, local.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	h.origin = &readOrigin{Origin: lo}
	var served backend.Origin = h.origin
	if o.plainReads {
		served = plainReads{h.origin}
	}
	id, err := h.db.ExportID("/data")
	if err != nil {
		t.Fatal(err)
	}
	ra := o.readAhead
	if ra == 0 {
		ra = -1
	}
	h.reg = prometheus.NewRegistry()
	h.cfg = cachefs.Config{
		Exports:            []cachefs.ExportConfig{{ID: id, Path: "/data", Origin: served, Consistency: o.consistency}},
		Chunks:             h.store,
		ChunkSizeBytes:     chunkBytes,
		ReadAheadMaxChunks: ra,
		Registry:           h.reg,
		Now:                o.now,
	}
	h.fs, err = cachefs.New(h.cfg, h.db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h.root, _, err = h.fs.Root(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
}

func (h *cacheHarness) close() {
	if h.fs == nil {
		return
	}
	_ = h.fs.Close()
	_ = h.store.Close()
	_ = h.origin.Close()
	_ = h.db.Close()
	h.fs = nil
}

// writeOrigin writes a file straight at the origin, behind nascache, with
// mtime set to mtime.
func (h *cacheHarness) writeOrigin(t *testing.T, name string, data []byte, mtime time.Time) {
	t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// readAll reads a whole file through the FS in READs of count bytes.
func (h *cacheHarness) readAll(t *testing.T, id cachefs.NodeID, count uint32) []byte {
	t.Helper()
	var out []byte
	for off := uint64(0); ; {
		res, err := h.fs.Read(t.Context(), rootCred, id, off, count)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		out = append(out, res.Data...)
		off += uint64(len(res.Data))
		if res.EOF {
			return out
		}
		if len(res.Data) == 0 {
			t.Fatalf("empty read at %d without eof", off)
		}
	}
}

// readAllIdle is readAll followed by WaitIdle: every chunk read is then
// stored and every figure final.
func (h *cacheHarness) readAllIdle(t *testing.T, id cachefs.NodeID, count uint32) []byte {
	t.Helper()
	b := h.readAll(t, id, count)
	h.fs.WaitIdle()
	return b
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestDataCacheHitsSkipOrigin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		count uint32
	}{
		{"empty", 0, 1 << 20},
		{"sub-chunk", 100, 1 << 20},
		{"exact chunks", 3 * chunkBytes, chunkBytes},
		{"odd reads", 5*chunkBytes + 17, 3000},
		{"one big read", 7*chunkBytes + 1, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCacheHarness(t, cacheOpts{})
			want := pattern(tc.size, 1)
			h.writeOrigin(t, "f", want, epoch)
			id, _ := h.lookup(t, "f")
			if got := h.readAllIdle(t, id, tc.count); !bytes.Equal(got, want) {
				t.Fatalf("first read: %d bytes differ from the origin's %d", len(got), len(want))
			}
			chunks := int64((tc.size + chunkBytes - 1) / chunkBytes)
			if got := h.origin.reads.Load(); got != chunks {
				t.Fatalf("first pass: %d origin reads, want one per chunk (%d)", got, chunks)
			}
			if got := h.readAllIdle(t, id, tc.count); !bytes.Equal(got, want) {
				t.Fatal("second read differs from the origin")
			}
			if got := h.origin.reads.Load(); got != chunks {
				t.Fatalf("second pass read the origin: %d reads, want %d", got, chunks)
			}
			st := h.fs.Stats()
			if !st.DataCache || st.Chunks != int(chunks) || st.OriginFetches != uint64(chunks) ||
				st.CacheBytesServed+st.OriginBytesServed != 2*uint64(tc.size) || st.CacheBytesServed < uint64(tc.size) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func (h *cacheHarness) lookup(t *testing.T, name string) (cachefs.NodeID, cachefs.Attr) {
	t.Helper()
	id, a, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return id, a
}

func TestDataCacheOneFetchForConcurrentReaders(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	want := pattern(chunkBytes, 2)
	h.writeOrigin(t, "f", want, epoch)
	id, _ := h.lookup(t, "f")
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.origin.onRead = func(uint64) {
		once.Do(func() { close(entered) })
		<-release
	}
	const readers = 16
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			res, err := h.fs.Read(t.Context(), rootCred, id, 0, chunkBytes)
			if err != nil || !bytes.Equal(res.Data, want) {
				t.Errorf("read: %v (%d bytes)", err, len(res.Data))
			}
		})
	}
	<-entered
	close(release)
	wg.Wait()
	if got := h.origin.reads.Load(); got != 1 {
		t.Fatalf("%d concurrent readers made %d origin reads, want 1", readers, got)
	}
}

func TestDataCacheOriginChange(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	old := pattern(3*chunkBytes, 3)
	h.writeOrigin(t, "f", old, epoch)
	id, _ := h.lookup(t, "f")
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, old) {
		t.Fatal("first read differs")
	}
	// Same size, new content and mtime, behind nascache's back.
	updated := pattern(3*chunkBytes, 4)
	h.writeOrigin(t, "f", updated, epoch.Add(time.Second))
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, updated) {
		t.Fatal("read after the origin changed served old bytes")
	}
}

func TestDataCacheNeverMixesVersions(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plainReads=%v", plain), func(t *testing.T) { testNeverMixesVersions(t, plain) })
	}
}

func testNeverMixesVersions(t *testing.T, plain bool) {
	h := newCacheHarness(t, cacheOpts{plainReads: plain})
	old := pattern(2*chunkBytes, 5)
	updated := pattern(2*chunkBytes, 6)
	h.writeOrigin(t, "f", old, epoch)
	id, _ := h.lookup(t, "f")
	// Cache chunk 0 of the old version.
	if res, err := h.fs.Read(t.Context(), rootCred, id, 0, chunkBytes); err != nil || !bytes.Equal(res.Data, old[:chunkBytes]) {
		t.Fatalf("read chunk 0: %v", err)
	}
	// The file changes at the origin just as chunk 1 is fetched for a
	// READ that already has chunk 0 of the old version in hand.
	var once sync.Once
	h.origin.onRead = func(off uint64) {
		if off == chunkBytes {
			once.Do(func() { h.writeOrigin(t, "f", updated, epoch.Add(time.Second)) })
		}
	}
	res, err := h.fs.Read(t.Context(), rootCred, id, 0, 2*chunkBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Data, updated) {
		t.Fatalf("READ across the change is not wholly the new version (old: %v)", bytes.Equal(res.Data, old))
	}
	if got := h.readAllIdle(t, id, 2*chunkBytes); !bytes.Equal(got, updated) {
		t.Fatal("later read is not the new version")
	}
}

func TestDataCacheWriteInvalidates(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	h.writeOrigin(t, "f", pattern(2*chunkBytes, 7), epoch)
	id, _ := h.lookup(t, "f")
	h.readAllIdle(t, id, chunkBytes)
	if _, err := h.fs.Write(t.Context(), rootCred, id, 10, []byte("hello"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	if st := h.fs.Stats(); st.Chunks != 0 {
		t.Fatalf("%d chunks cached after a write, want 0", st.Chunks)
	}
	want := pattern(2*chunkBytes, 7)
	copy(want[10:], "hello")
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, want) {
		t.Fatal("read after write differs")
	}
	size := uint64(100)
	if _, err := h.fs.SetAttr(t.Context(), rootCred, id, cachefs.SetAttr{SizeBytes: &size}, nil); err != nil {
		t.Fatal(err)
	}
	if st := h.fs.Stats(); st.Chunks != 0 {
		t.Fatalf("%d chunks cached after a truncate, want 0", st.Chunks)
	}
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, want[:100]) {
		t.Fatal("read after truncate differs")
	}
}

func TestDataCacheCorruptChunkRefetched(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	want := pattern(chunkBytes, 8)
	h.writeOrigin(t, "f", want, epoch)
	id, _ := h.lookup(t, "f")
	h.readAllIdle(t, id, chunkBytes)
	files, err := filepath.Glob(filepath.Join(h.chunks, "chunks", "*", "*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("chunk files %v, %v", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, want) {
		t.Fatal("served a corrupt chunk")
	}
	if got := h.origin.reads.Load(); got != 2 {
		t.Fatalf("%d origin reads, want 2 (the refetch)", got)
	}
	if st := h.fs.Stats(); st.CorruptChunks != 1 || st.Chunks != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDataCacheCapacityAndHotSet(t *testing.T) {
	const capacity = 16
	h := newCacheHarness(t, cacheOpts{capacityChunks: capacity})
	hot := pattern(2*chunkBytes, 9)
	h.writeOrigin(t, "hot", hot, epoch)
	hotID, _ := h.lookup(t, "hot")
	for range 3 {
		h.readAllIdle(t, hotID, chunkBytes)
	}
	// A scan over four times the capacity, read once.
	const scanFiles = 4 * capacity
	for i := range scanFiles {
		name := "scan" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		data := pattern(chunkBytes, byte(i))
		h.writeOrigin(t, name, data, epoch)
		id, _ := h.lookup(t, name)
		if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, data) {
			t.Fatalf("scan file %d differs", i)
		}
		// The hot set is read between scan reads, as a training job
		// reads its index files.
		if i%8 == 0 {
			h.readAllIdle(t, hotID, chunkBytes)
		}
		if st := h.store.Stats(); st.UsedBytes > st.CapacityBytes {
			t.Fatalf("used %d > capacity %d", st.UsedBytes, st.CapacityBytes)
		}
	}
	before := h.origin.reads.Load()
	if got := h.readAllIdle(t, hotID, chunkBytes); !bytes.Equal(got, hot) {
		t.Fatal("hot file differs")
	}
	if got := h.origin.reads.Load() - before; got != 0 {
		t.Fatalf("hot set was flushed by the scan: %d origin reads", got)
	}
	if st := h.fs.Stats(); st.Evictions == 0 {
		t.Fatalf("no evictions in a scan of 4x the capacity: %+v", st)
	}
}

func TestDataCacheReadAhead(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{readAhead: 4})
	const chunks = 16
	want := pattern(chunks*chunkBytes, 10)
	h.writeOrigin(t, "f", want, epoch)
	id, _ := h.lookup(t, "f")
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, want) {
		t.Fatal("sequential read differs")
	}
	// Read-ahead may not have finished for the last chunks when the
	// reads asked for them, but no chunk is fetched twice.
	if got := h.origin.reads.Load(); got != chunks {
		t.Fatalf("%d origin reads for %d chunks", got, chunks)
	}
	st := h.fs.Stats()
	if st.ReadAheadIssued == 0 || st.ReadAheadUsed == 0 || st.ReadAheadUsed > st.ReadAheadIssued {
		t.Fatalf("read-ahead issued %d, used %d", st.ReadAheadIssued, st.ReadAheadUsed)
	}
	// Every chunk but the first was asked for ahead of the reads.
	if st.ReadAheadIssued != chunks-1 {
		t.Fatalf("read-ahead issued %d, want %d", st.ReadAheadIssued, chunks-1)
	}
}

func TestDataCacheMetricsRegistered(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	h.writeOrigin(t, "f", pattern(100, 1), epoch)
	id, _ := h.lookup(t, "f")
	h.readAllIdle(t, id, chunkBytes)
	h.readAllIdle(t, id, chunkBytes)
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				got[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				got[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"nascache_cache_chunk_hits_total":   1,
		"nascache_cache_chunk_misses_total": 1,
		"nascache_read_bytes_total{cache}":  100,
		"nascache_read_bytes_total{origin}": 100,
		"nascache_origin_read_seconds":      1,
		"nascache_cache_capacity_bytes":     1024 * charge,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

func TestDataCacheOriginKeepsChangingGivesJukebox(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	h.writeOrigin(t, "f", pattern(chunkBytes, 1), epoch)
	id, _ := h.lookup(t, "f")
	// Every fetch sees the file rewritten under it.
	var n atomic.Int64
	h.origin.onRead = func(uint64) {
		h.writeOrigin(t, "f", pattern(chunkBytes, byte(n.Add(1))), epoch.Add(time.Duration(n.Load())*time.Second))
	}
	if _, err := h.fs.Read(t.Context(), rootCred, id, 0, chunkBytes); !errors.Is(err, cachefs.ErrJukebox) {
		t.Fatalf("read of a file that never holds still: %v, want ErrJukebox", err)
	}
	h.fs.WaitIdle()
	if st := h.fs.Stats(); st.Chunks != 0 {
		t.Fatalf("%d chunks stored from a changing file", st.Chunks)
	}
}

// An origin whose reads return the attributes after the read proves each
// fetched chunk's version without a GETATTR; one without pays one per
// fetch.
func TestDataCacheFetchVersionCheck(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plainReads=%v", plain), func(t *testing.T) {
			h := newCacheHarness(t, cacheOpts{plainReads: plain, consistency: cachefs.Consistency{Mode: cachefs.ConsistencyImmutable}})
			const chunks = 8
			want := pattern(chunks*chunkBytes, 9)
			h.writeOrigin(t, "f", want, epoch)
			id, _ := h.lookup(t, "f")
			before := h.origin.getattrs.Load()
			if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, want) {
				t.Fatal("read differs from the origin")
			}
			wantGetattrs := int64(0)
			if plain {
				wantGetattrs = chunks
			}
			if got := h.origin.getattrs.Load() - before; got != wantGetattrs {
				t.Fatalf("%d GETATTRs for %d chunk fetches, want %d", got, chunks, wantGetattrs)
			}
		})
	}
}

// TestDataCacheBufferReuseStress reads random ranges of several files from
// many goroutines through a cache too small for them, so that chunks are
// fetched, shared, served from their fetch buffers, evicted and fetched
// again while those buffers are recycled: every byte must be the file's,
// and each result is checked only after a delay (as a reply would be
// written) and before it is released.
func TestDataCacheBufferReuseStress(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{capacityChunks: 6, readAhead: 4})
	const files, size = 4, 9*chunkBytes + 123
	ids := make([]cachefs.NodeID, files)
	want := make([][]byte, files)
	for i := range files {
		want[i] = pattern(size, byte(40+i))
		name := fmt.Sprintf("f%d", i)
		h.writeOrigin(t, name, want[i], epoch)
		ids[i], _ = h.lookup(t, name)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			seed := uint64(w*7919 + 1)
			next := func(n uint64) uint64 { seed = seed*6364136223846793005 + 1442695040888963407; return (seed >> 33) % n }
			for range 300 {
				f := next(files)
				off := next(size)
				count := uint32(1 + next(2*chunkBytes))
				if next(3) == 0 { // whole, aligned chunks: served from the fetch buffer
					off = next(9) * chunkBytes
					count = chunkBytes
				}
				res, err := h.fs.Read(t.Context(), rootCred, ids[f], off, count)
				if err != nil {
					t.Errorf("read f%d at %d: %v", f, off, err)
					return
				}
				end := min(off+uint64(count), size)
				runtime.Gosched()
				if !bytes.Equal(res.Data, want[f][off:end]) {
					t.Errorf("f%d at %d+%d: wrong bytes", f, off, count)
				}
				if res.Release != nil {
					res.Release()
				}
			}
		})
	}
	wg.Wait()
}
