package cachefs_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/nascache/nascache/cachefs"
)

// readChunk reads chunk i of f through the FS.
func (h *cacheHarness) readChunk(t *testing.T, id cachefs.NodeID, i int) []byte {
	t.Helper()
	res, err := h.fs.Read(t.Context(), rootCred, id, uint64(i*chunkBytes), chunkBytes)
	if err != nil {
		t.Fatalf("read chunk %d: %v", i, err)
	}
	return res.Data
}

// streamHarness is a ttl:2s export whose file f (3 chunks) was read whole
// at the clock's start and then rewritten at the origin, same size.
func streamHarness(t *testing.T) (*cacheHarness, *fakeClock, cachefs.NodeID, []byte, []byte) {
	t.Helper()
	clock := &fakeClock{now: epoch}
	h := newCacheHarness(t, cacheOpts{consistency: cachefs.Consistency{Mode: cachefs.ConsistencyTTL, TTL: 2 * time.Second}, now: clock.Now})
	old, updated := pattern(3*chunkBytes, 11), pattern(3*chunkBytes, 12)
	h.writeOrigin(t, "f", old, epoch)
	id, _ := h.lookup(t, "f")
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, old) {
		t.Fatal("first read differs from the origin")
	}
	h.writeOrigin(t, "f", updated, epoch.Add(time.Minute))
	return h, clock, id, old, updated
}

// A READ burst started with young attributes keeps its version even when
// the attribute cache learns of the new version mid-burst (here from a
// directory listing): no mix of old and new chunks in one read of a file.
func TestStreamBurstKeepsOneVersion(t *testing.T) {
	h, clock, id, old, updated := streamHarness(t)
	clock.advance(500 * time.Millisecond)
	got := h.readChunk(t, id, 0)
	// A listing of the directory fetches f's new attributes.
	if _, err := h.fs.ReadDir(t.Context(), rootCred, h.root, 0, 0, func(cachefs.DirEntry) bool { return true }); err != nil {
		t.Fatal(err)
	}
	got = append(got, h.readChunk(t, id, 1)...)
	got = append(got, h.readChunk(t, id, 2)...)
	if !bytes.Equal(got, old) {
		t.Fatalf("burst mixed versions (all new: %v)", bytes.Equal(got, updated))
	}
	// After a pause the next read starts a new stream, which takes the
	// new version (its attributes are older than TTL/2: asked again).
	clock.advance(1100 * time.Millisecond)
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, updated) {
		t.Fatal("a new read after the pause did not get the new version")
	}
}

// A stream start takes cached attributes only while they are younger
// than TTL/2, so a burst cannot run into their expiry.
func TestStreamStartRevalidatesAfterHalfTTL(t *testing.T) {
	h, clock, id, _, updated := streamHarness(t)
	clock.advance(1200 * time.Millisecond) // cached attributes 1.2 s old, still valid for GETATTR
	before := h.origin.getattrs.Load()
	if got := h.readAllIdle(t, id, chunkBytes); !bytes.Equal(got, updated) {
		t.Fatal("read starting 1.2 s after the attributes were asked did not revalidate")
	}
	if h.origin.getattrs.Load() == before {
		t.Fatal("no GETATTR reached the origin")
	}
}

// No READ uses attributes older than the TTL, even inside a stream.
func TestStreamNeverOlderThanTTL(t *testing.T) {
	h, clock, id, old, updated := streamHarness(t)
	clock.advance(900 * time.Millisecond)
	if got := h.readChunk(t, id, 0); !bytes.Equal(got, old[:chunkBytes]) {
		t.Fatal("chunk 0: want the old version (attributes 0.9 s old)")
	}
	clock.advance(900 * time.Millisecond)
	if got := h.readChunk(t, id, 1); !bytes.Equal(got, old[chunkBytes:2*chunkBytes]) {
		t.Fatal("chunk 1: want the old version (stream attributes 1.8 s old)")
	}
	clock.advance(300 * time.Millisecond)
	if got := h.readChunk(t, id, 2); !bytes.Equal(got, updated[2*chunkBytes:]) {
		t.Fatal("chunk 2: stream attributes 2.1 s old were used past the 2 s TTL")
	}
}
