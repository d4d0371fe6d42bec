package cachefs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nascache/nascache/cachefs"
)

func TestWarmPinSurvivesEvictionAndRestart(t *testing.T) {
	const capacity = 16
	o := cacheOpts{capacityChunks: capacity}
	h := newCacheHarness(t, o)
	if err := os.MkdirAll(filepath.Join(h.dir, "ds", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ds/a":     pattern(2*chunkBytes, 1),
		"ds/b":     pattern(2*chunkBytes+5, 2),
		"ds/empty": nil,
		"ds/sub/c": pattern(100, 3),
	}
	var bytesTotal int64
	for name, data := range files {
		h.writeOrigin(t, name, data, epoch)
		bytesTotal += int64(len(data))
	}
	const chunks = 2 + 3 + 0 + 1

	var mu sync.Mutex
	var last cachefs.WarmProgress
	calls := 0
	p, err := h.fs.Warm(t.Context(), "/data", "ds", cachefs.WarmOptions{Pin: true, Parallelism: 3}, func(p cachefs.WarmProgress) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		last = p
	})
	if err != nil {
		t.Fatal(err)
	}
	want := cachefs.WarmProgress{FilesDone: 4, FilesTotal: 4, BytesDone: bytesTotal, BytesTotal: bytesTotal}
	if p != want {
		t.Fatalf("warm = %+v, want %+v", p, want)
	}
	if calls != 4 || last.FilesDone != 4 {
		t.Fatalf("%d progress calls, last %+v", calls, last)
	}
	h.fs.WaitIdle()
	if got := h.origin.reads.Load(); got != chunks {
		t.Fatalf("warm made %d origin reads, want %d", got, chunks)
	}
	// Warming again finds everything cached.
	if p, err := h.fs.Warm(t.Context(), "/data", "/ds/", cachefs.WarmOptions{}, nil); err != nil || p != want {
		t.Fatalf("second warm = %+v, %v", p, err)
	}
	if got := h.origin.reads.Load(); got != chunks {
		t.Fatalf("second warm read the origin: %d reads", got)
	}

	scan := func() {
		for i := range 3 * capacity {
			name := fmt.Sprintf("scan%03d", i)
			h.writeOrigin(t, name, pattern(chunkBytes, byte(i)), epoch)
			id, _ := h.lookup(t, name)
			h.readAllIdle(t, id, chunkBytes)
		}
	}
	check := func(when string) {
		t.Helper()
		before := h.origin.reads.Load()
		for name, data := range files {
			id := h.walk(t, name)
			if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, data) {
				t.Fatalf("%s: %s differs", when, name)
			}
		}
		if got := h.origin.reads.Load() - before; got != 0 {
			t.Fatalf("%s: pinned data was evicted (%d origin reads)", when, got)
		}
	}
	scan()
	check("after a scan")
	if st := h.store.Stats(); st.UsedBytes > st.CapacityBytes || st.PinnedBytes == 0 {
		t.Fatalf("store %+v", st)
	}

	// Pins come back from meta after a restart.
	h.close()
	h.open(t, o)
	if st := h.store.Stats(); st.PinnedBytes == 0 {
		t.Fatalf("no pinned bytes after restart: %+v", st)
	}
	scan()
	check("after restart and a scan")
}

func TestWarmErrors(t *testing.T) {
	h := newCacheHarness(t, cacheOpts{})
	if _, err := h.fs.Warm(t.Context(), "/nope", ".", cachefs.WarmOptions{}, nil); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("unknown export: %v", err)
	}
	if _, err := h.fs.Warm(t.Context(), "/data", "missing", cachefs.WarmOptions{}, nil); !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatalf("missing path: %v", err)
	}
	h.writeOrigin(t, "f", pattern(3*chunkBytes, 1), epoch)
	p, err := h.fs.Warm(t.Context(), "/data", "f", cachefs.WarmOptions{}, nil)
	if err != nil || p.FilesDone != 1 || p.BytesDone != 3*chunkBytes {
		t.Fatalf("warm of one file = %+v, %v", p, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.fs.Warm(ctx, "/data", ".", cachefs.WarmOptions{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled warm: %v", err)
	}
}

// walk looks a slash-separated path up from the root.
func (h *cacheHarness) walk(t *testing.T, p string) cachefs.NodeID {
	t.Helper()
	id, dir := h.root, h.root
	for _, name := range splitPath(p) {
		var err error
		id, _, _, err = h.fs.Lookup(t.Context(), rootCred, dir, name)
		if err != nil {
			t.Fatalf("lookup %s: %v", p, err)
		}
		dir = id
	}
	return id
}

func splitPath(p string) []string {
	var out []string
	for _, s := range bytes.Split([]byte(p), []byte("/")) {
		if len(s) > 0 {
			out = append(out, string(s))
		}
	}
	return out
}
