package cachefs

import (
	"sync"
	"time"

	"github.com/nascache/nascache/backend"
)

// Attribute and lookup freshness (exports not in strict mode).
//
// What the origin said about an object (its attributes) or a name (the
// inode it maps to, or that it does not exist) is kept in memory with the
// time it was asked and the export's change generation at that time. An
// entry is used while the export's Consistency says it is fresh and the
// generation has not moved.
//
// Writes through nascache keep the view current at once: WRITE, SETATTR
// and COMMIT store the attributes the origin returned; every namespace
// change (CREATE, MKDIR, SYMLINK, MKNOD, LINK, REMOVE, RMDIR, RENAME)
// bumps the export's generation, which retires every cached attribute,
// lookup and listing of that export. That is coarse, but a namespace
// change is rare on the exports that use ttl or immutable (data sets),
// and it cannot miss an object an operation touched indirectly (nlink
// and ctime of a hard link's other names, the ".." of a moved
// directory).
//
// In strict mode nothing is cached: every GETATTR, LOOKUP and READ asks
// the origin. File data is cached in every mode: a chunk is named by the
// origin version taken from the attributes of the READ that uses it.
//
// The maps are bounded by freshMaxEntries each; when one is full it is
// cleared (a cache, not a record: the next calls refill it).

// freshMaxEntries bounds each map of a freshCache.
const freshMaxEntries = 1 << 18

type lookupKey struct {
	dir  uint64
	name string
}

type attrEntry struct {
	a     backend.Attr
	asked time.Time
	gen   uint64
}

type lookupEntry struct {
	ino   uint64 // 0: the name does not exist
	asked time.Time
	gen   uint64
}

// freshCache holds attributes and lookups of non-strict exports.
type freshCache struct {
	mu      sync.Mutex // guards attrs and lookups
	attrs   map[uint64]attrEntry
	lookups map[lookupKey]lookupEntry
}

func newFreshCache() *freshCache {
	return &freshCache{attrs: make(map[uint64]attrEntry), lookups: make(map[lookupKey]lookupEntry)}
}

func (c *freshCache) attr(ino uint64) (attrEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.attrs[ino]
	return e, ok
}

func (c *freshCache) putAttr(ino uint64, e attrEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.attrs) >= freshMaxEntries {
		clear(c.attrs)
	}
	c.attrs[ino] = e
}

func (c *freshCache) dropAttr(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.attrs, ino)
}

func (c *freshCache) lookup(dir uint64, name string) (lookupEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lookups[lookupKey{dir, name}]
	return e, ok
}

func (c *freshCache) putLookup(dir uint64, name string, e lookupEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lookups) >= freshMaxEntries {
		clear(c.lookups)
	}
	c.lookups[lookupKey{dir, name}] = e
}

func (c *freshCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.attrs)
	clear(c.lookups)
}

// cached reports whether ex caches origin answers at all.
func (ex *export) cached() bool { return ex.consistency.Mode != ConsistencyStrict }

// usable reports whether an answer asked at asked under generation gen
// may still be used for ex.
func (fs *FS) usable(ex *export, asked time.Time, gen uint64) bool {
	return ex.cached() && gen == ex.gen.Load() && ex.consistency.fresh(asked, fs.now())
}

// changed retires every cached answer of ex: called after each namespace
// change made through nascache.
func (ex *export) changed() { ex.gen.Add(1) }

// noteAttr stores attributes the origin returned (asked at asked, under
// generation gen read before the origin was asked).
func (fs *FS) noteAttr(ex *export, ino uint64, a backend.Attr, asked time.Time, gen uint64) {
	if ex.cached() {
		fs.fresh.putAttr(ino, attrEntry{a: a, asked: asked, gen: gen})
	}
}
