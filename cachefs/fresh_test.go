package cachefs_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nascache/nascache/cachefs"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestParseConsistency(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want cachefs.Consistency
		ok   bool
	}{
		{"strict", cachefs.Consistency{Mode: cachefs.ConsistencyStrict}, true},
		{"immutable", cachefs.Consistency{Mode: cachefs.ConsistencyImmutable}, true},
		{"ttl:2s", cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: 2 * time.Second}, true},
		{"ttl:150ms", cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: 150 * time.Millisecond}, true},
		{"ttl:0s", cachefs.Consistency{}, false},
		{"ttl:-1s", cachefs.Consistency{}, false},
		{"ttl:", cachefs.Consistency{}, false},
		{"ttl", cachefs.Consistency{}, false},
		{"", cachefs.Consistency{}, false},
		{"Strict", cachefs.Consistency{}, false},
	} {
		got, err := cachefs.ParseConsistency(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseConsistency(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok {
			if back, err := cachefs.ParseConsistency(got.String()); err != nil || back != got {
				t.Errorf("%q does not round-trip: %v, %v", got.String(), back, err)
			}
		}
	}
}

func TestFreshnessModes(t *testing.T) {
	const ttl = 2 * time.Second
	for _, tc := range []struct {
		mode cachefs.Consistency
		// seenAt: how long after the change nascache shows it (-1: never
		// within the test).
		seenAt time.Duration
	}{
		{cachefs.Consistency{Mode: cachefs.ConsistencyStrict}, 0},
		{cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: ttl}, ttl},
		{cachefs.Consistency{Mode: cachefs.ConsistencyImmutable}, -1},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			clock := &fakeClock{now: epoch}
			h := newCacheHarness(t, cacheOpts{consistency: tc.mode, now: clock.Now})
			old := pattern(2*chunkBytes, 1)
			h.writeOrigin(t, "f", old, epoch)
			id, _ := h.lookup(t, "f")
			if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, old) {
				t.Fatal("first read differs")
			}
			// Rewritten at the origin, longer and with a new mtime.
			updated := pattern(3*chunkBytes, 2)
			h.writeOrigin(t, "f", updated, epoch.Add(time.Hour))
			check := func(after time.Duration) {
				t.Helper()
				a, err := h.fs.GetAttr(t.Context(), rootCred, id)
				if err != nil {
					t.Fatal(err)
				}
				got := h.readAllIdle(t, id, chunkBytes)
				visible := tc.seenAt >= 0 && after >= tc.seenAt
				// Under ttl a READ may see the change before the TTL is
				// up (a read stream revalidates attributes older than
				// TTL/2, see stream.go), but only whole: never a mix.
				early := tc.mode.Mode == cachefs.ConsistencyTTL && !visible && bytes.Equal(got, updated)
				switch {
				case visible && (a.SizeBytes != uint64(len(updated)) || !bytes.Equal(got, updated)):
					t.Fatalf("%v after the change: size %d, new bytes %v; want the new file", after, a.SizeBytes, bytes.Equal(got, updated))
				case !visible && a.SizeBytes != uint64(len(old)):
					t.Fatalf("%v after the change: GETATTR size %d; want the cached view of the old file", after, a.SizeBytes)
				case !visible && !early && !bytes.Equal(got, old):
					t.Fatalf("%v after the change: read %d bytes, neither the old file nor the new one whole", after, len(got))
				}
			}
			check(0)
			clock.advance(ttl - time.Millisecond)
			check(ttl - time.Millisecond)
			clock.advance(time.Millisecond)
			check(ttl)
			clock.advance(time.Hour)
			check(ttl + time.Hour)
		})
	}
}

func TestFreshStrictAsksOriginEveryTime(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	h.writeOrigin(t, "f", pattern(10, 1), epoch)
	id, _ := h.lookup(t, "f")
	before := h.origin.getattrs.Load()
	for range 3 {
		if _, err := h.fs.GetAttr(t.Context(), rootCred, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.origin.getattrs.Load() - before; got != 3 {
		t.Fatalf("strict: 3 GETATTRs made %d origin calls", got)
	}
}

func TestFreshImmutableServesFromCache(t *testing.T) {
	clock := &fakeClock{now: epoch}
	h := newCacheHarness(t, cacheOpts{consistency: cachefs.Consistency{Mode: cachefs.ConsistencyImmutable}, now: clock.Now})
	for _, n := range []string{"a", "b", "c"} {
		h.writeOrigin(t, n, pattern(10, 1), epoch)
	}
	list := func() []string {
		var names []string
		if _, err := h.fs.ReadDir(t.Context(), rootCred, h.root, 0, 0, func(e cachefs.DirEntry) bool {
			names = append(names, e.Name)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return names
	}
	first := list()
	id, _ := h.lookup(t, "a")
	if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "missing"); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("lookup of a missing name: %v", err)
	}
	readDirs, lookups, getattrs := h.origin.readDirs.Load(), h.origin.lookups.Load(), h.origin.getattrs.Load()
	clock.advance(24 * time.Hour)
	for range 3 {
		if got := list(); len(got) != len(first) {
			t.Fatalf("listing %v, want %v", got, first)
		}
		if got, _ := h.lookup(t, "a"); got != id {
			t.Fatalf("lookup gave %v, want %v", got, id)
		}
		if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "missing"); !errors.Is(err, cachefs.ErrNotExist) {
			t.Fatalf("cached negative lookup: %v", err)
		}
		if _, err := h.fs.GetAttr(t.Context(), rootCred, id); err != nil {
			t.Fatal(err)
		}
	}
	if h.origin.readDirs.Load() != readDirs || h.origin.lookups.Load() != lookups || h.origin.getattrs.Load() != getattrs {
		t.Fatalf("immutable export asked the origin: readdirs %d->%d, lookups %d->%d, getattrs %d->%d",
			readDirs, h.origin.readDirs.Load(), lookups, h.origin.lookups.Load(), getattrs, h.origin.getattrs.Load())
	}
	if st := h.fs.Stats(); st.AttrHits == 0 {
		t.Fatalf("no attribute hits counted: %+v", st)
	}

	// Changes made through nascache are seen at once.
	mid, _, _, err := h.fs.Create(t.Context(), rootCred, h.root, "missing", cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: cachefs.SetAttr{Mode: mode(0o644)}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := h.lookup(t, "missing"); got != mid {
		t.Fatalf("lookup after create = %v, want %v", got, mid)
	}
	if got := list(); len(got) != len(first)+1 {
		t.Fatalf("listing after create %v", got)
	}
	if _, err := h.fs.Write(t.Context(), rootCred, id, 100, []byte("x"), cachefs.FileSync); err != nil {
		t.Fatal(err)
	}
	if a, err := h.fs.GetAttr(t.Context(), rootCred, id); err != nil || a.SizeBytes != 101 {
		t.Fatalf("size after write = %d, %v", a.SizeBytes, err)
	}
	if _, err := h.fs.Remove(t.Context(), rootCred, h.root, "missing"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "missing"); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("lookup after remove: %v", err)
	}
}

func TestFreshTTLNegativeLookup(t *testing.T) {
	clock := &fakeClock{now: epoch}
	h := newCacheHarness(t, cacheOpts{consistency: cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: time.Second}, now: clock.Now})
	if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "late"); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("lookup: %v", err)
	}
	h.writeOrigin(t, "late", pattern(10, 1), epoch)
	if _, _, _, err := h.fs.Lookup(t.Context(), rootCred, h.root, "late"); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("within the ttl the negative entry holds: %v", err)
	}
	clock.advance(time.Second)
	h.lookup(t, "late")
}
