package cachefs

import (
	"errors"
	"sync"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/meta"
)

// Attribute, lookup and listing freshness (exports not in strict mode).
//
// What the origin said about an object (its attributes), a name (the
// inode it maps to, or that it does not exist) or a whole directory (a
// listing) is kept with the wall-clock time it was asked and the export's
// change generation at that time. An answer is used while the export's
// Consistency says it is fresh and the generation has not moved.
//
// # Two tiers
//
// Answers live in memory (freshCache here, listingCache in readdir.go,
// bounded) and in meta (persist.go writes them, meta/fresh.go stores
// them). A call looks in memory first; on a miss it reads meta (one read
// transaction) before it asks the origin, and what it loads goes into
// memory. Hits write nothing. What the origin answers goes into memory at
// once and into a queue that a batch writer owned by the FS commits to
// meta in groups; a full queue drops origin answers (a cache), never
// blocks a call. A key that is in memory, usable or not, is not looked up
// in meta: meta never holds a newer answer than memory, because
// everything it holds went through memory first.
//
// # Generations and why a persisted answer is never stale
//
// The generation of an export (meta.Generation) moves on after every
// namespace change made through nascache (CREATE, MKDIR, SYMLINK, MKNOD,
// LINK, REMOVE, RMDIR, RENAME): BeginChange before the origin is asked to
// change, EndChange after it answered, before the directory's post-op
// attributes are fetched. That retires every cached attribute, lookup and
// listing of the export, in memory and in meta. It is coarse, but
// namespace changes are rare on the exports that cache (data sets), and it
// cannot miss an object a change touched indirectly (nlink and ctime of a
// hard link's other names, the ".." of a moved directory). An answer is
// stamped with the generation read before the origin was asked, so an
// answer that raced with a change carries the old generation.
//
// Why nothing persisted is served stale after a restart:
//
//   - The writer stores an answer only if its generation is still the
//     current one and no change of its export is in flight, and stores
//     the current generation in the same transaction (meta.WriteFresh,
//     meta.WriteListing): the persisted generation is never below that of
//     a persisted answer.
//   - A clean shutdown (FS.Close flushes the queue, then meta.DB.Close)
//     stores the final generations with a clean-shutdown marker; an answer
//     that was retired in memory is retired on disk too.
//   - After a crash or kill -9 there is no marker: meta.Open moves every
//     export's generation one past its persisted value, retiring
//     everything persisted before the crash (whatever changes the crashed
//     process made but did not persist), and removes the marker durably
//     before anything is served. Chunks are not affected: they are keyed by
//     origin version.
//   - Changes through nascache that do not move the generation (WRITE,
//     SETATTR, COMMIT store the attributes the origin returned; a failed
//     one, or a READ that saw the file change, drops them) are queued as
//     must-keep records: the queue takes them beyond its bound for origin
//     answers, and if even that is full the export's generation is moved on
//     instead, so the persisted attributes they supersede can never come
//     back. A dropped origin answer is harmless: what meta keeps instead
//     is an older answer of the same generation, still true as of its own
//     (earlier) asked time.
//   - Under ttl the asked time is wall clock, so a TTL keeps running across
//     a restart; immutable answers live until the export changes through
//     nascache or nascache crashes. Strict exports cache nothing.
//   - An export whose consistency mode changed since the last start is
//     retired at New (meta.SetConsistency): an answer taken under ttl is
//     not to be trusted forever under immutable, and while an export was
//     strict its origin may have changed behind nascache.
//
// Garbage: an answer refreshed under the same key overwrites the old
// record; Forget of an inode drops its attributes and, for a directory,
// its listing and the lookups made in it. Records of retired generations
// under keys that are never asked again stay until their object is
// forgotten.
//
// In strict mode nothing is cached: every GETATTR, LOOKUP and READ asks
// the origin. File data is cached in every mode: a chunk is named by the
// origin version taken from the attributes of the READ that uses it.

type lookupKey struct {
	dir  uint64
	name string
}

type attrEntry struct {
	a     backend.Attr
	asked time.Time
	gen   uint64
	// void marks attributes known to be out of date (dropAttr): the entry
	// is never used, and keeps meta from being consulted for the inode.
	void bool
}

// voidGen is the generation of a void entry: never current, so even a
// reader that does not look at void does not use it.
const voidGen = ^uint64(0)

type lookupEntry struct {
	ino   uint64 // 0: the name does not exist
	asked time.Time
	gen   uint64
}

// freshCache holds attributes and lookups of non-strict exports in memory.
type freshCache struct {
	max int
	// onDrop is told of every dropAttr (set once by New, before use).
	onDrop func(ino uint64)

	mu      sync.Mutex // guards attrs and lookups
	attrs   map[uint64]attrEntry
	lookups map[lookupKey]lookupEntry
}

func newFreshCache(max int) *freshCache {
	return &freshCache{max: max, attrs: make(map[uint64]attrEntry), lookups: make(map[lookupKey]lookupEntry)}
}

// shrinkLocked makes room in a full map by deleting an eighth of it
// (Go's map order is random, so that is a random eighth): cheaper than an
// LRU on every hit, and no cliff as clearing the whole map would be.
func shrinkLocked[K comparable, V any](m map[K]V, max int) {
	if len(m) < max {
		return
	}
	n := max/8 + 1
	for k := range m {
		delete(m, k)
		if n--; n == 0 {
			return
		}
	}
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
	if _, ok := c.attrs[ino]; !ok {
		shrinkLocked(c.attrs, c.max)
	}
	c.attrs[ino] = e
}

// loadAttr puts e (loaded from meta) unless the inode has an entry by now:
// one put while meta was read is newer.
func (c *freshCache) loadAttr(ino uint64, e attrEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.attrs[ino]; !ok {
		shrinkLocked(c.attrs, c.max)
		c.attrs[ino] = e
	}
}

// dropAttr marks the attributes of ino as out of date, here and (through
// onDrop) in meta.
func (c *freshCache) dropAttr(ino uint64) {
	c.mu.Lock()
	if _, ok := c.attrs[ino]; !ok {
		shrinkLocked(c.attrs, c.max)
	}
	c.attrs[ino] = attrEntry{void: true, gen: voidGen}
	c.mu.Unlock()
	if c.onDrop != nil {
		c.onDrop(ino)
	}
}

func (c *freshCache) lookup(dir uint64, name string) (lookupEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lookups[lookupKey{dir, name}]
	return e, ok
}

func (c *freshCache) putLookup(dir uint64, name string, e lookupEntry, onlyNew bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := lookupKey{dir, name}
	_, ok := c.lookups[k]
	if ok && onlyNew {
		return
	}
	if !ok {
		shrinkLocked(c.lookups, c.max)
	}
	c.lookups[k] = e
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

// beginChange marks a namespace change of ex as in flight (nothing of ex
// is persisted meanwhile). The returned func, called once after the
// origin answered, retires every cached answer of ex.
func (ex *export) beginChange() (end func()) {
	ex.gen.BeginChange()
	return ex.gen.EndChange
}

// retire retires every cached answer of ex without a change: used when a
// must-keep record could not be queued.
func (fs *FS) retire(ex *export) {
	ex.gen.BeginChange()
	ex.gen.EndChange()
	fs.log.Warn().Uint16("export", ex.id).Msg("meta write queue full: cached answers of the export retired")
}

func (ex *export) stamp(asked time.Time, gen uint64) meta.Stamp {
	return meta.Stamp{Export: ex.id, Gen: gen, Asked: asked}
}

// noteAttr stores attributes the origin returned for a change made
// through nascache (WRITE, SETATTR, COMMIT), asked at asked under
// generation gen read before the origin was asked. They supersede what
// meta holds, so they must reach it (see the top of this file).
func (fs *FS) noteAttr(ex *export, ino uint64, a backend.Attr, asked time.Time, gen uint64) {
	fs.putAttr(ex, ino, a, asked, gen, true)
}

// noteOriginAttr stores attributes the origin answered to a question.
func (fs *FS) noteOriginAttr(ex *export, ino uint64, a backend.Attr, asked time.Time, gen uint64) {
	fs.putAttr(ex, ino, a, asked, gen, false)
}

func (fs *FS) putAttr(ex *export, ino uint64, a backend.Attr, asked time.Time, gen uint64, must bool) {
	if !ex.cached() {
		return
	}
	fs.fresh.putAttr(ino, attrEntry{a: a, asked: asked, gen: gen})
	if fs.persist != nil && !fs.persist.attr(ino, meta.AttrRecord{Stamp: ex.stamp(asked, gen), Attr: a}, must) {
		fs.retire(ex)
	}
}

// persistDrop tells meta that the attributes of ino are out of date.
func (fs *FS) persistDrop(ino uint64) {
	if fs.persist == nil || fs.persist.dropAttr(ino) {
		return
	}
	in, err := fs.inode(ino)
	if err != nil {
		if !errors.Is(err, ErrStale) {
			fs.log.Warn().Err(err).Uint64("ino", ino).Msg("could not retire dropped attributes")
		}
		return
	}
	if ex := fs.exports[in.Export]; ex != nil {
		fs.retire(ex)
	}
}

// noteLookup stores the answer of a LOOKUP (ino 0: does not exist).
func (fs *FS) noteLookup(ex *export, dir uint64, name string, ino uint64, asked time.Time, gen uint64) {
	if !ex.cached() {
		return
	}
	fs.fresh.putLookup(dir, name, lookupEntry{ino: ino, asked: asked, gen: gen}, false)
	if fs.persist != nil {
		fs.persist.lookup(dir, name, meta.LookupRecord{Stamp: ex.stamp(asked, gen), Ino: ino})
	}
}

// freshAttr returns the cached attributes of ino when ex's consistency
// allows: from memory, else from meta.
func (fs *FS) freshAttr(ex *export, ino uint64) (backend.Attr, bool) {
	if !ex.cached() {
		return backend.Attr{}, false
	}
	e, ok := fs.fresh.attr(ino)
	if !ok {
		e, ok = fs.loadAttr(ex, ino)
	}
	if !ok || e.void || !fs.usable(ex, e.asked, e.gen) {
		return backend.Attr{}, false
	}
	fs.m.attrHits.Add(1)
	return e.a, true
}

// loadAttr reads the attributes of ino from the write queue or meta and
// keeps them in memory. A corrupt record is a miss.
func (fs *FS) loadAttr(ex *export, ino uint64) (attrEntry, bool) {
	if fs.persist == nil {
		return attrEntry{}, false
	}
	if e, ok := fs.persist.pendingAttr(ino); ok {
		return e, true
	}
	r, err := fs.db.Attr(ino)
	if err != nil {
		fs.metaMiss(err, "attributes", ino)
		return attrEntry{}, false
	}
	if r.Export != ex.id {
		return attrEntry{}, false
	}
	e := attrEntry{a: r.Attr, asked: r.Asked, gen: r.Gen}
	fs.fresh.loadAttr(ino, e)
	return e, true
}

// freshLookup returns the cached answer for name in dir when ex's
// consistency allows: from memory, else from meta.
func (fs *FS) freshLookup(ex *export, dir uint64, name string) (lookupEntry, bool) {
	e, ok := fs.fresh.lookup(dir, name)
	if !ok && fs.persist != nil {
		r, err := fs.db.Lookup(dir, name)
		switch {
		case err != nil:
			fs.metaMiss(err, "lookup", dir)
		case r.Export == ex.id:
			e, ok = lookupEntry{ino: r.Ino, asked: r.Asked, gen: r.Gen}, true
			fs.fresh.putLookup(dir, name, e, true)
		}
	}
	if !ok || !fs.usable(ex, e.asked, e.gen) {
		return lookupEntry{}, false
	}
	return e, true
}

// metaMiss logs a meta read of the freshness tier that failed for another
// reason than an absent record. It is a miss either way: the origin is
// asked, and its answer replaces the record.
func (fs *FS) metaMiss(err error, what string, ino uint64) {
	if !errors.Is(err, meta.ErrNotFound) {
		fs.log.Warn().Err(err).Str("what", what).Uint64("ino", ino).Msg("cached answer in meta unusable")
	}
}
