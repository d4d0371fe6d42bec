package chunkstore

// The cache of open chunk files.
//
// A hit of a chunk whose descriptor is cached is one preadv and a CRC:
// no path, no open, no close. Chunk files are immutable (replaced only by
// rename, deleted only by unlink), so a descriptor opened for an entry
// reads that entry's bytes for as long as it stays open.
//
// Three things must stay true.
//
//   - No descriptor is used after it is closed: the kernel reuses fd
//     numbers at once, so a late pread would read another file. Each
//     cached descriptor is an openFile with a reference count: one for
//     the cache while it is installed in entry.file, one per reader
//     using it. Whoever drops the count to zero closes the descriptor,
//     and tryAcquire never raises a count from zero.
//   - The capacity bound holds: an open descriptor of an unlinked chunk
//     keeps its blocks allocated. The cache holds the entry like a reader
//     (one openReader in entry.opens, taken under Store.mu's read lock
//     while the entry is ready, so rule 1 of "Readers keep their chunk
//     charged" holds) and drops that hold only after close; so the charge
//     of an evicted or removed chunk lasts until its cached descriptor is
//     closed too. Removal closes it (Store.dropCachedFile, before the
//     unlink), unless a reader still uses it, and then the reader's
//     release closes it and returns the charge.
//   - The number of cached descriptors is bounded (fileCache.limit), so
//     the process never runs out of them because of the cache; should it
//     run out anyway (EMFILE), the reader sheds half of the cache and
//     retries its open once.
//
// Which descriptors stay: a CLOCK over the slots. A hit through a cached
// descriptor sets its used bit (no lock); a new descriptor takes a free
// slot, or else the hand clears used bits until it finds one not used
// since it last passed, and closes that. While every slot is taken, only
// one new descriptor in admitEvery is admitted: a scan over more chunks
// than the cache holds would otherwise replace every descriptor before
// its next use (zero hits, as for LRU); throttled, a stable part of the
// working set stays cached and hot descriptors are not pushed out by a
// scan. A descriptor turned away is closed after its read, as it would
// be with no cache.

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// admitEvery: while the cache is full, one descriptor in admitEvery is
// cached (evicting another); the rest are closed after their read.
const admitEvery = 8

// openFile is a chunk file descriptor kept open after a read.
type openFile struct {
	fd   int
	e    *entry // the entry whose file fd is
	slot int    // index in fileCache.slots; set before it is published

	// refs counts the cache's reference (from install until the
	// descriptor leaves entry.file) plus one per reader using fd. The
	// one that drops it to zero closes fd; it never rises from zero.
	refs atomic.Int32
	// used is the CLOCK reference bit: set by a hit, cleared by the hand.
	used atomic.Bool
}

// tryAcquire takes a reference unless the descriptor is already closed
// or being closed.
func (f *openFile) tryAcquire() bool {
	for {
		n := f.refs.Load()
		if n == 0 {
			return false
		}
		if f.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// fileSlot is one place in the CLOCK.
type fileSlot struct {
	e *entry
	f *openFile // nil: free
}

// fileCache is the bounded set of cached descriptors.
type fileCache struct {
	// limit is the most descriptors cached at once (0: no cache); set by
	// Open.
	limit int

	// mu guards the fields below. Lock order: Store.mu (read side)
	// before mu; nothing is taken while mu is held, and no descriptor is
	// closed under it.
	mu      sync.Mutex
	slots   []fileSlot // len <= limit; an installed openFile is in slots[f.slot]
	free    []int      // indexes of free slots
	hand    int
	rejects int // descriptors turned away while full (admission throttle)
}

// cachedLocked is the number of descriptors cached.
func (c *fileCache) cachedLocked() int { return len(c.slots) - len(c.free) }

// slotLocked finds a slot for a new descriptor: a free one, a new one, or
// the CLOCK victim's, whose descriptor it takes out of its entry and
// returns for the caller to release (after unlocking). ok is false when
// the cache is full and the admission throttle turns the newcomer away.
func (c *fileCache) slotLocked() (i int, victim *openFile, ok bool) {
	if n := len(c.free); n > 0 {
		i = c.free[n-1]
		c.free = c.free[:n-1]
		return i, nil, true
	}
	if len(c.slots) < c.limit {
		c.slots = append(c.slots, fileSlot{})
		return len(c.slots) - 1, nil, true
	}
	c.rejects++
	if c.rejects%admitEvery != 0 {
		return 0, nil, false
	}
	// Two turns at most: the first clears every used bit.
	for range 2 * len(c.slots) {
		i = c.hand
		c.hand = (c.hand + 1) % len(c.slots)
		sl := c.slots[i]
		if sl.f.used.Load() {
			sl.f.used.Store(false)
			continue
		}
		c.slots[i] = fileSlot{}
		// A removal may have taken it out of the entry already (it then
		// finds the slot reused and leaves it alone).
		if sl.e.file.CompareAndSwap(sl.f, nil) {
			victim = sl.f
		}
		return i, victim, true
	}
	panic("chunkstore: CLOCK found no victim in two turns")
}

// takeAllLocked empties the cache and returns the descriptors it took out
// of their entries, for the caller to release; at most n of them from
// the hand on if n > 0.
func (c *fileCache) takeAllLocked(n int) []*openFile {
	var taken []*openFile
	for k := 0; k < len(c.slots) && (n <= 0 || len(taken) < n); k++ {
		i := (c.hand + k) % len(c.slots)
		sl := c.slots[i]
		if sl.f == nil {
			continue
		}
		c.slots[i] = fileSlot{}
		c.free = append(c.free, i)
		if sl.e.file.CompareAndSwap(sl.f, nil) {
			taken = append(taken, sl.f)
		}
	}
	return taken
}

// cacheFile offers fd, just opened for a read of e (which the caller
// holds as a reader and checked was not unlinked after the open), to the
// cache. If it is cached, the returned openFile has a reference for the
// caller, who releases it with releaseFile instead of closing fd; if not
// (no cache, the store closing, e no longer ready, another reader cached
// e first, the admission throttle), it returns nil and the caller closes
// fd itself.
func (s *Store) cacheFile(e *entry, fd int) *openFile {
	c := &s.files
	if c.limit == 0 {
		return nil
	}
	var victim *openFile
	var f *openFile
	// The read lock orders the install before any removal of e, which
	// leaves stateReady under the write lock: a removal either sees the
	// descriptor in e.file and closes it, or comes first and nothing is
	// installed. e being ready also means fd is e's own file (see
	// "Readers keep their chunk charged").
	s.mu.RLock()
	if !s.closed && e.state == stateReady && e.file.Load() == nil {
		c.mu.Lock()
		i, v, ok := c.slotLocked()
		victim = v
		if ok {
			nf := &openFile{fd: fd, e: e, slot: i}
			nf.refs.Store(2) // the cache's and the caller's
			if e.file.CompareAndSwap(nil, nf) {
				c.slots[i] = fileSlot{e: e, f: nf}
				e.opens.Add(openReader) // the cache holds e like a reader
				f = nf
			} else {
				c.free = append(c.free, i) // another reader cached e first
			}
		}
		c.mu.Unlock()
	}
	s.mu.RUnlock()
	if victim != nil {
		s.releaseFile(victim)
	}
	return f
}

// releaseFile drops a reference to f; the last one closes the descriptor
// and then ends the hold the cache had on the entry (which, for an
// unlinked entry with no reader left, returns its charge).
func (s *Store) releaseFile(f *openFile) {
	if f.refs.Add(-1) != 0 {
		return
	}
	unix.Close(f.fd) //nolint:errcheck // read-only descriptor: close cannot lose data
	s.endHold(f.e)
}

// dropCachedFile takes e's cached descriptor, if any, out of the cache
// and releases the cache's reference. Removals call it once e has left
// stateReady (so no new descriptor can be installed) and before they set
// unlinkedBit.
func (s *Store) dropCachedFile(e *entry) {
	f := e.file.Swap(nil)
	if f == nil {
		return
	}
	c := &s.files
	c.mu.Lock()
	if c.slots[f.slot].f == f {
		c.slots[f.slot] = fileSlot{}
		c.free = append(c.free, f.slot)
	}
	c.mu.Unlock()
	s.releaseFile(f)
}

// shedFiles closes up to half of the cached descriptors (at least one)
// and returns how many it took out; for a process out of descriptors.
func (s *Store) shedFiles() int {
	c := &s.files
	c.mu.Lock()
	taken := c.takeAllLocked(max(1, c.cachedLocked()/2))
	c.mu.Unlock()
	for _, f := range taken {
		s.releaseFile(f)
	}
	return len(taken)
}

// closeFiles closes every cached descriptor; Close calls it once nothing
// is in flight.
func (s *Store) closeFiles() {
	c := &s.files
	c.mu.Lock()
	taken := c.takeAllLocked(0)
	c.slots, c.free, c.hand = nil, nil, 0
	c.mu.Unlock()
	for _, f := range taken {
		s.releaseFile(f)
	}
}

// fileLimit is the effective bound of the cache: the configured one, but
// leaving the rest of the process descriptors to spare: at least half of
// the RLIMIT_NOFILE soft limit, and at least fileReserve of it.
func fileLimit(configured int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return configured
	}
	room := rl.Cur / 2
	if rl.Cur > 2*fileReserve {
		room = rl.Cur - fileReserve
	}
	return int(min(uint64(configured), room))
}

// fileReserve is how many descriptors the open-file cache leaves to the
// rest of the process (client and origin connections, the database, logs)
// when the limit is large enough: a few thousand connections.
const fileReserve = 4096
