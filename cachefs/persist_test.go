package cachefs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/meta"
)

// Tests of the freshness tier in meta: what the FS learnt from the origin
// survives a restart on the same meta database, and never outlives a
// change made through nascache or a crash.

var t0 = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

// synthOrigin counts every origin call that asks about the namespace
// (LOOKUP, READDIR, GETATTR) and answers for one synthetic directory of n
// entries: making 100,000 real files would dominate the test's time.
type synthOrigin struct {
	backend.Origin
	calls atomic.Int64
	n     int

	mu  sync.Mutex // guards big
	big backend.Handle
}

func (o *synthOrigin) setBig(h backend.Handle) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.big = h
}

func (o *synthOrigin) isBig(h backend.Handle) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.big != nil && bytes.Equal(h, o.big)
}

func synthAttr(i uint64) backend.Attr {
	return backend.Attr{Type: backend.TypeRegular, Mode: 0o644, Nlink: 1, SizeBytes: i, FileID: 1<<40 + i, Mtime: t0}
}

func (o *synthOrigin) ReadDir(ctx context.Context, cred backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	o.calls.Add(1)
	if !o.isBig(dir) {
		return o.Origin.ReadDir(ctx, cred, dir, fn)
	}
	for i := o.n - 1; i >= 0; i-- {
		e := backend.DirEntry{Name: fmt.Sprintf("f%06d", i), Handle: backend.Handle("synthetic-" + strconv.Itoa(i)), Attr: synthAttr(uint64(i))}
		if !fn(e) {
			return nil
		}
	}
	return nil
}

func (o *synthOrigin) GetAttr(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.Attr, error) {
	o.calls.Add(1)
	if s, ok := strings.CutPrefix(string(h), "synthetic-"); ok {
		i, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return backend.Attr{}, fmt.Errorf("synthetic handle %q: %w", h, backend.ErrBadHandle)
		}
		return synthAttr(i), nil
	}
	return o.Origin.GetAttr(ctx, cred, h)
}

func (o *synthOrigin) Lookup(ctx context.Context, cred backend.Cred, dir backend.Handle, name string) (backend.Handle, backend.Attr, error) {
	o.calls.Add(1)
	return o.Origin.Lookup(ctx, cred, dir, name)
}

// freshHarness is an FS over a local origin and a meta database that
// survive restarts of the FS.
type freshHarness struct {
	dir, dbPath string
	consistency cachefs.Consistency
	clock       *fakeClock
	queue       int // PersistQueueEntries; 0: default
	snapshots   int // ListingCacheSnapshots; 0: default
	n           int // entries of the synthetic directory
	bigH        backend.Handle

	db     *meta.DB
	origin *synthOrigin
	fs     *cachefs.FS
	root   cachefs.NodeID
}

func newFreshHarness(t testing.TB, c cachefs.Consistency) *freshHarness {
	t.Helper()
	h := &freshHarness{dir: t.TempDir(), dbPath: filepath.Join(t.TempDir(), "meta.db"), consistency: c, clock: &fakeClock{now: t0}}
	h.open(t)
	t.Cleanup(h.close)
	return h
}

func (h *freshHarness) open(t testing.TB) {
	t.Helper()
	db, err := meta.Open(h.dbPath, meta.Options{Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := local.New(h.dir, local.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.ExportID("/data")
	if err != nil {
		t.Fatal(err)
	}
	h.db, h.origin = db, &synthOrigin{Origin: lo, n: h.n}
	h.origin.setBig(h.bigH)
	cfg := cachefs.Config{
		Exports:               []cachefs.ExportConfig{{ID: id, Path: "/data", Origin: h.origin, Consistency: h.consistency}},
		Now:                   h.clock.Now,
		PersistQueueEntries:   h.queue,
		ListingCacheSnapshots: h.snapshots,
		PersistFlushInterval:  time.Hour, // commits happen on count, flush and close
	}
	if h.fs, err = cachefs.New(cfg, db, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if h.root, _, err = h.fs.Root(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

// close shuts down cleanly: the FS writes what is queued, meta records a
// clean shutdown.
func (h *freshHarness) close() {
	if h.fs == nil {
		return
	}
	_ = h.fs.Close()
	_ = h.origin.Close()
	_ = h.db.Close()
	h.fs = nil
}

func (h *freshHarness) restart(t testing.TB) {
	t.Helper()
	h.close()
	h.open(t)
}

// crashRestart restarts from a copy of the meta database taken while it
// was open, as kill -9 would leave it: after the queue was written
// (flushed) or with whatever was queued lost.
func (h *freshHarness) crashRestart(t testing.TB, flushed bool) {
	t.Helper()
	if flushed {
		h.fs.FlushFresh()
	}
	raw, err := os.ReadFile(h.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	h.close()
	if err := os.WriteFile(h.dbPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	h.open(t)
}

// list reads all of dir in pages of 1000 entries and returns the names,
// checking cookies, order and that no entry comes twice.
func (h *freshHarness) list(t testing.TB, dir cachefs.NodeID) []string {
	t.Helper()
	var names []string
	var cookie, verf uint64
	for {
		count := 0
		res, err := h.fs.ReadDir(t.Context(), rootCred, dir, cookie, verf, func(e cachefs.DirEntry) bool {
			if count == 1000 {
				return false
			}
			count++
			if e.Cookie != cookie+1 {
				t.Fatalf("entry %q: cookie %d after %d", e.Name, e.Cookie, cookie)
			}
			if n := len(names); n > 2 && e.Name <= names[n-1] {
				t.Fatalf("entry %q after %q", e.Name, names[n-1])
			}
			if e.Name != "." && e.Name != ".." && e.Attr.FileID != e.Node.Ino {
				t.Fatalf("entry %q without attributes: %+v", e.Name, e.Attr)
			}
			cookie = e.Cookie
			names = append(names, e.Name)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if verf != 0 && res.Verifier != verf {
			t.Fatalf("verifier changed mid-listing: %d then %d", verf, res.Verifier)
		}
		verf = res.Verifier
		if res.EOF {
			return names
		}
	}
}

// calls runs fn and returns how many origin calls it made.
func (h *freshHarness) calls(fn func()) int64 {
	before := h.origin.calls.Load()
	fn()
	return h.origin.calls.Load() - before
}

func (h *freshHarness) writeOrigin(t testing.TB, name string, size int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeBig makes the directory "big" and has the origin list n synthetic
// entries in it.
func (h *freshHarness) makeBig(t testing.TB, n int) cachefs.NodeID {
	t.Helper()
	big, _, _, err := h.fs.Mkdir(t.Context(), rootCred, h.root, "big", cachefs.SetAttr{Mode: mode(0o755)})
	if err != nil {
		t.Fatal(err)
	}
	rh, _, err := h.origin.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h.bigH, _, err = h.origin.Origin.Lookup(t.Context(), rootCred, rh, "big"); err != nil {
		t.Fatal(err)
	}
	h.n, h.origin.n = n, n
	h.origin.setBig(h.bigH)
	return big
}

// TestPersistedBigListing lists a 100,000-entry directory of an immutable
// export: the second listing, and the one after a clean restart, do not
// touch the origin; the one after a crash does.
func TestPersistedBigListing(t *testing.T) {
	const n = 100000
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	big := h.makeBig(t, n)
	check := func(when string, names []string) {
		t.Helper()
		if len(names) != n+2 || names[0] != "." || names[1] != ".." || names[2] != "f000000" || names[n+1] != fmt.Sprintf("f%06d", n-1) {
			t.Fatalf("%s: listed %d entries", when, len(names))
		}
	}
	if c := h.calls(func() { check("first listing", h.list(t, big)) }); c == 0 {
		t.Fatal("first listing did not ask the origin")
	}
	if c := h.calls(func() { check("second listing", h.list(t, big)) }); c != 0 {
		t.Fatalf("second listing made %d origin calls", c)
	}
	h.restart(t)
	if c := h.calls(func() { check("listing after restart", h.list(t, big)) }); c != 0 {
		t.Fatalf("listing after a clean restart made %d origin calls", c)
	}
	// Entries keep their inodes across the restart.
	if in, err := h.db.ByFileID(big.Export, 1<<40+123); err != nil || in.Name != "f000123" || in.Parent != big.Ino {
		t.Fatalf("inode of f000123: %+v %v", in, err)
	}
	h.crashRestart(t, true)
	if c := h.calls(func() { check("listing after crash", h.list(t, big)) }); c == 0 {
		t.Fatal("listing after a crash did not ask the origin")
	}
}

// TestPersistedTTLAcrossRestart: a ttl export serves persisted answers
// after a restart while they are fresh by wall clock, and asks the origin
// once they expired.
func TestPersistedTTLAcrossRestart(t *testing.T) {
	const ttl = time.Minute
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: ttl})
	h.writeOrigin(t, "a", 10)
	h.writeOrigin(t, "b", 20)
	touch := func() {
		t.Helper()
		if got := h.list(t, h.root); len(got) != 4 {
			t.Fatalf("listing %v", got)
		}
		id, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "a")
		if err != nil {
			t.Fatal(err)
		}
		if a, err := h.fs.GetAttr(t.Context(), rootCred, id); err != nil || a.SizeBytes != 10 {
			t.Fatalf("getattr: %+v %v", a, err)
		}
		if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "nope"); !errors.Is(err, cachefs.ErrNotExist) {
			t.Fatalf("lookup of a missing name: %v", err)
		}
	}
	touch()
	h.clock.advance(ttl / 2)
	h.restart(t)
	if c := h.calls(touch); c != 0 {
		t.Fatalf("within the ttl after a restart: %d origin calls", c)
	}
	h.clock.advance(ttl / 2)
	h.restart(t)
	if c := h.calls(touch); c == 0 {
		t.Fatal("after the ttl ran out across a restart the origin was not asked")
	}
}

// TestPersistedInvalidatedByChange: a namespace change through nascache
// retires persisted listings and negative lookups, also across restarts.
func TestPersistedInvalidatedByChange(t *testing.T) {
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	h.writeOrigin(t, "a", 1)
	if got := h.list(t, h.root); len(got) != 3 {
		t.Fatalf("listing %v", got)
	}
	if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "x"); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("lookup x: %v", err)
	}
	h.restart(t)
	// Both come from meta.
	if c := h.calls(func() {
		if got := h.list(t, h.root); len(got) != 3 {
			t.Fatalf("listing %v", got)
		}
		if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "x"); !errors.Is(err, cachefs.ErrNotExist) {
			t.Fatalf("persisted negative lookup: %v", err)
		}
	}); c != 0 {
		t.Fatalf("after a restart: %d origin calls", c)
	}
	x, _, _, err := h.fs.Create(t.Context(), rootCred, h.root, "x", cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: cachefs.SetAttr{Mode: mode(0o644)}})
	if err != nil {
		t.Fatal(err)
	}
	if id, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "x"); err != nil || id != x {
		t.Fatalf("lookup after create = %v, %v; want %v", id, err, x)
	}
	h.restart(t)
	if got := h.list(t, h.root); len(got) != 4 || got[3] != "x" {
		t.Fatalf("listing after create and restart %v", got)
	}
	if id, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "x"); err != nil || id != x {
		t.Fatalf("lookup after create and restart = %v, %v; want %v", id, err, x)
	}
	// The same with a crash right after the change, before anything of
	// the new generation reached meta: the persisted listing (without y)
	// must not come back.
	h.fs.FlushFresh()
	if _, _, _, err := h.fs.Create(t.Context(), rootCred, h.root, "y", cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: cachefs.SetAttr{Mode: mode(0o644)}}); err != nil {
		t.Fatal(err)
	}
	h.crashRestart(t, false)
	if got := h.list(t, h.root); len(got) != 5 || got[4] != "y" {
		t.Fatalf("listing after create and crash %v", got)
	}
}

// TestPersistedWriteAttrs: attributes a WRITE through nascache changed are
// what a restarted immutable export serves, never the older ones meta had.
func TestPersistedWriteAttrs(t *testing.T) {
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	h.writeOrigin(t, "f", 10)
	id, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "f")
	if err != nil {
		t.Fatal(err)
	}
	h.fs.FlushFresh() // meta holds size 10
	if _, err := h.fs.Write(t.Context(), rootCred, id, 100, []byte("x"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	h.restart(t)
	var a cachefs.Attr
	if c := h.calls(func() { a, err = h.fs.GetAttr(t.Context(), rootCred, id) }); err != nil || a.SizeBytes != 101 || c != 0 {
		t.Fatalf("after restart: size %d, %v, %d origin calls; want 101 from meta", a.SizeBytes, err, c)
	}
}

// TestPersistQueueFull: origin answers that do not fit the queue are not
// persisted; a must-keep record that does not fit retires the export, so
// the older attributes meta holds are never served.
func TestPersistQueueFull(t *testing.T) {
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	h.queue = 3
	h.restart(t)
	var ids []cachefs.NodeID
	for i := range 8 {
		name := fmt.Sprintf("f%d", i)
		h.writeOrigin(t, name, 10)
		id, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, name)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// The queue took 3 answers (the root's attributes, f0's lookup and
	// attributes) and dropped the rest; meta now has f0 at size 10.
	h.fs.FlushFresh()
	if c := h.calls(func() {
		if _, err := h.fs.GetAttr(t.Context(), rootCred, ids[7]); err != nil {
			t.Fatal(err)
		}
	}); c != 0 {
		t.Fatalf("getattr made %d origin calls: answers are cached in memory whatever the queue did", c)
	}
	// Must-keep records may take twice the bound: the seventh WRITE does
	// not fit, and the export is retired.
	for _, id := range ids {
		if _, err := h.fs.Write(t.Context(), rootCred, id, 100, []byte("y"), cachefs.FileSync); err != nil {
			t.Fatal(err)
		}
	}
	if c := h.calls(func() {
		if _, err := h.fs.GetAttr(t.Context(), rootCred, ids[7]); err != nil {
			t.Fatal(err)
		}
	}); c == 0 {
		t.Fatal("export not retired after a must-keep record was refused")
	}
	h.restart(t)
	for i, id := range ids {
		if a, err := h.fs.GetAttr(t.Context(), rootCred, id); err != nil || a.SizeBytes != 101 {
			t.Fatalf("f%d after restart: size %d, %v; want 101", i, a.SizeBytes, err)
		}
	}
}

// TestPersistedListingResumesByPosition: a client pages through a listing
// whose snapshot is evicted from memory between pages; the rest comes from
// the listing in meta, in the same order, with no entry twice or missed
// and without the origin.
func TestPersistedListingResumesByPosition(t *testing.T) {
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	h.snapshots = 1
	h.restart(t)
	for i := range 50 {
		h.writeOrigin(t, fmt.Sprintf("n%02d", i), i)
	}
	if err := os.Mkdir(filepath.Join(h.dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "sub")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	page := func(cookie, verf uint64, max int) (uint64, cachefs.ReadDirResult) {
		t.Helper()
		count := 0
		res, err := h.fs.ReadDir(t.Context(), rootCred, h.root, cookie, verf, func(e cachefs.DirEntry) bool {
			if count == max {
				return false
			}
			count++
			if seen[e.Name] {
				t.Fatalf("entry %q twice", e.Name)
			}
			seen[e.Name] = true
			cookie = e.Cookie
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return cookie, res
	}
	cookie, res := page(0, 0, 10)
	h.fs.FlushFresh()
	h.list(t, sub) // the only snapshot kept in memory now
	if c := h.calls(func() {
		for !res.EOF {
			cookie, res = page(cookie, res.Verifier, 10)
		}
	}); c != 0 {
		t.Fatalf("resuming made %d origin calls", c)
	}
	if len(seen) != 50+3 {
		t.Fatalf("listed %d entries, want 53", len(seen))
	}
}

// BenchmarkListAfterRestart is the first READDIRPLUS pass over a
// 100,000-entry directory of an immutable export after a clean restart:
// served from meta (one read transaction for the listing, entries' inodes
// and attributes) without the origin.
func BenchmarkListAfterRestart(b *testing.B) {
	const n = 100000
	h := newFreshHarness(b, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	big := h.makeBig(b, n)
	h.list(b, big)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h.restart(b)
		b.StartTimer()
		if got := h.list(b, big); len(got) != n+2 {
			b.Fatalf("listed %d", len(got))
		}
	}
	b.StopTimer()
	if c := h.origin.calls.Load(); c != 0 {
		b.Fatalf("%d origin calls after the last restart", c)
	}
}

// TestPersistedModeChangeRetires: answers persisted under one consistency
// mode are not used after a restart under another.
func TestPersistedModeChangeRetires(t *testing.T) {
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	h.writeOrigin(t, "a", 1)
	touch := func() {
		t.Helper()
		if got := h.list(t, h.root); len(got) != 3 {
			t.Fatalf("listing %v", got)
		}
	}
	touch()
	h.consistency = cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: time.Hour}
	h.restart(t)
	if c := h.calls(touch); c == 0 {
		t.Fatal("after a mode change the persisted listing was used")
	}
	h.restart(t)
	if c := h.calls(touch); c != 0 {
		t.Fatalf("same mode after a restart: %d origin calls", c)
	}
}

// TestPersistedNoStaleAfterConcurrentCreates creates names while other
// goroutines look them up, list the directory and write to meta, then
// restarts (cleanly, then after a crash): every created name must be
// found and listed. A negative answer that raced with a create and reached
// meta must never come back.
func TestPersistedNoStaleAfterConcurrentCreates(t *testing.T) {
	h := newFreshHarness(t, cachefs.Consistency{Mode: cachefs.ConsistencyImmutable})
	const n = 60
	name := func(i int) string { return fmt.Sprintf("c%03d", i) }
	ctx := t.Context()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				_, _, _, err := h.fs.Lookup(ctx, rootCred, h.root, name((i*7+w)%n))
				if err != nil && !errors.Is(err, cachefs.ErrNotExist) {
					t.Error(err)
					return
				}
				if _, err := h.fs.ReadDir(ctx, rootCred, h.root, 0, 0, func(cachefs.DirEntry) bool { return true }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				h.fs.FlushFresh()
			}
		}
	})
	for i := range n {
		if _, _, _, err := h.fs.Create(ctx, rootCred, h.root, name(i), cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: cachefs.SetAttr{Mode: mode(0o644)}}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	check := func(when string) {
		t.Helper()
		for i := range n {
			if _, _, _, err := h.fs.Lookup(ctx, rootCred, h.root, name(i)); err != nil {
				t.Fatalf("%s: lookup %s: %v", when, name(i), err)
			}
		}
		if got := h.list(t, h.root); len(got) != n+2 {
			t.Fatalf("%s: listed %d entries, want %d", when, len(got), n+2)
		}
	}
	check("before restart")
	h.restart(t)
	check("after a clean restart")
	h.crashRestart(t, true)
	check("after a crash")
}
