package local

import (
	"container/list"
	"os"
	"sync"
)

// fdCache keeps recently used regular files open so that a stream of READs
// and WRITEs to one file does not open and close it per call. Entries are
// reference counted: an evicted entry is closed when its last user
// releases it.
type fdCache struct {
	maxOpen int

	mu sync.Mutex // guards everything below
	// byKey maps a handle (as a string) to its entry.
	byKey map[string]*fdEntry
	// lru holds *fdEntry, most recently used at the front.
	lru *list.List
}

type fdEntry struct {
	key      string
	path     string
	f        *os.File
	writable bool
	refs     int  // users holding the entry; guarded by fdCache.mu
	evicted  bool // removed from the cache; closed when refs drops to 0
	elem     *list.Element
}

func newFDCache(maxOpen int) *fdCache {
	return &fdCache{maxOpen: maxOpen, byKey: make(map[string]*fdEntry), lru: list.New()}
}

// get returns a held entry for key that is writable if write is set, or
// nil when it has to be opened.
func (c *fdCache) get(key []byte, write bool) *fdEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byKey[string(key)] // no allocation: the conversion is only for the lookup
	if e == nil || (write && !e.writable) {
		return nil
	}
	e.refs++
	c.lru.MoveToFront(e.elem)
	return e
}

// add inserts a freshly opened file, held by the caller, replacing any
// older entry for the key, and evicts the least recently used entries
// over the bound.
func (c *fdCache) add(key, path string, f *os.File, writable bool) *fdEntry {
	e := &fdEntry{key: key, path: path, f: f, writable: writable, refs: 1}
	var toClose []*os.File
	c.mu.Lock()
	if old := c.byKey[key]; old != nil {
		toClose = c.evictLocked(old, toClose)
	}
	e.elem = c.lru.PushFront(e)
	c.byKey[key] = e
	for c.lru.Len() > c.maxOpen {
		toClose = c.evictLocked(c.lru.Back().Value.(*fdEntry), toClose)
	}
	c.mu.Unlock()
	closeAll(toClose)
	return e
}

// release drops a hold taken by get or add.
func (c *fdCache) release(e *fdEntry) {
	c.mu.Lock()
	e.refs--
	closeIt := e.evicted && e.refs == 0
	c.mu.Unlock()
	if closeIt {
		_ = e.f.Close() // read-only use or already synced: nothing to lose
	}
}

// dropPath evicts every entry whose path is p or lies under p (after a
// remove or rename), so that no descriptor of a removed file stays open.
func (c *fdCache) dropPath(p string) {
	var toClose []*os.File
	c.mu.Lock()
	for _, e := range c.byKey {
		if e.path == p || (len(e.path) > len(p) && e.path[len(p)] == '/' && e.path[:len(p)] == p) || p == "" {
			toClose = c.evictLocked(e, toClose)
		}
	}
	c.mu.Unlock()
	closeAll(toClose)
}

// closeAllEntries evicts everything (Close).
func (c *fdCache) closeAllEntries() {
	c.dropPath("")
}

func (c *fdCache) evictLocked(e *fdEntry, toClose []*os.File) []*os.File {
	if e.evicted {
		return toClose
	}
	e.evicted = true
	c.lru.Remove(e.elem)
	delete(c.byKey, e.key)
	if e.refs == 0 {
		toClose = append(toClose, e.f)
	}
	return toClose
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		// Closing a descriptor cannot lose data: writes that asked for
		// durability were synced before they returned, and unstable
		// writes are in the page cache, which Commit syncs by inode.
		_ = f.Close()
	}
}
