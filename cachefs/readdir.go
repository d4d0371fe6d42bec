package cachefs

import (
	"container/list"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/meta"
)

// Directory listings are served from snapshots: on cookie 0 (or a
// verifier no longer cached) the whole directory is read from the origin
// once, sorted by name, every entry mapped to its inode in batched meta
// transactions, and kept under a fresh verifier. Entry i (0-based) of a
// snapshot has cookie i+1, so a client resumes by position and paging
// through n entries costs O(n) in total. "." and ".." are the first two
// entries of every snapshot.
//
// A non-strict export keeps listings in meta too (fresh.go): a fresh
// snapshot is queued for the meta writer, and a listing that memory lacks
// is loaded from meta (one read transaction, with every entry's inode
// record and attributes) before the origin is asked. A loaded listing is
// a snapshot like any other, under a new verifier: its names and order
// are those of the snapshot it was persisted from (the same generation,
// so the same answer), so a client that resumes by position after its
// verifier was evicted sees no more duplicates or misses than a rebuild
// from the origin would give it. Its attributes are served like those of
// a kept snapshot: current per the export's consistency, page by page.

// listing is one snapshot of a directory.
type listing struct {
	verifier uint64
	dir      uint64 // inode of the directory listed
	entries  []DirEntry
	// handles are the origin handles of entries (same index), so that
	// later pages refresh attributes without a meta lookup each.
	handles []backend.Handle
	elem    *list.Element
	// asked and gen are when the origin was read and the export's
	// generation then: a non-strict export reuses a fresh snapshot for a
	// new listing (fresh.go).
	asked time.Time
	gen   uint64
}

// listingCache keeps recent snapshots, bounded by count and by the total
// number of entries.
type listingCache struct {
	maxSnapshots int
	maxEntries   int

	mu         sync.Mutex // guards everything below
	nextVerf   uint64
	byVerf     map[uint64]*listing
	byDir      map[uint64]*listing // the newest snapshot of each directory
	lru        *list.List          // of *listing, most recent at the front
	numEntries int
}

func newListingCache(maxSnapshots, maxEntries int, seed uint64) *listingCache {
	return &listingCache{
		maxSnapshots: maxSnapshots, maxEntries: maxEntries,
		nextVerf: seed, byVerf: make(map[uint64]*listing), byDir: make(map[uint64]*listing), lru: list.New(),
	}
}

func (c *listingCache) get(verf, dir uint64) *listing {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byVerf[verf]
	if l == nil || l.dir != dir {
		return nil
	}
	c.lru.MoveToFront(l.elem)
	return l
}

// add stores l under a new, non-zero verifier that no earlier snapshot of
// this process had. The seed (the start time) keeps verifiers of
// different runs apart.
func (c *listingCache) add(l *listing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextVerf++
	if c.nextVerf == 0 {
		c.nextVerf++
	}
	l.verifier = c.nextVerf
	l.elem = c.lru.PushFront(l)
	c.byVerf[l.verifier] = l
	c.byDir[l.dir] = l
	c.numEntries += len(l.entries)
	for c.lru.Len() > 1 && (c.lru.Len() > c.maxSnapshots || c.numEntries > c.maxEntries) {
		old := c.lru.Remove(c.lru.Back()).(*listing)
		delete(c.byVerf, old.verifier)
		if c.byDir[old.dir] == old {
			delete(c.byDir, old.dir)
		}
		c.numEntries -= len(old.entries)
	}
}

// latest returns the newest snapshot of directory dir, if one is kept.
func (c *listingCache) latest(dir uint64) *listing {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byDir[dir]
	if l != nil {
		c.lru.MoveToFront(l.elem)
	}
	return l
}

func (c *listingCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byVerf = make(map[uint64]*listing)
	c.byDir = make(map[uint64]*listing)
	c.lru.Init()
	c.numEntries = 0
}

// ReadDir lists dir from cookie (0 = start), calling fn for each entry in
// order until fn returns false or the listing ends. See the FS contract
// in nfsserver. A verifier that is no longer cached is not an error: the
// listing is rebuilt and continued by position.
func (fs *FS) ReadDir(ctx context.Context, cred Cred, dirID NodeID, cookie, verifier uint64, fn func(DirEntry) bool) (ReadDirResult, error) {
	res, err := fs.readDir(ctx, cred, dirID, cookie, verifier, fn)
	if err != nil {
		// res carries the directory's attributes when they are known.
		return res, fmt.Errorf("readdir %s from cookie %d: %w", dirID, cookie, err)
	}
	return res, nil
}

func (fs *FS) readDir(ctx context.Context, cred Cred, dirID NodeID, cookie, verifier uint64, fn func(DirEntry) bool) (ReadDirResult, error) {
	dir, err := fs.resolve(dirID)
	if err != nil {
		return ReadDirResult{}, err
	}
	da, err := fs.getattr(ctx, cred, &dir)
	if err != nil {
		return ReadDirResult{}, err
	}
	res := ReadDirResult{DirAttr: dir.ex.attr(dir.in.Ino, da)}
	if da.Type != backend.TypeDirectory {
		return res, ErrNotDir
	}
	if err := checkPerm(cred, da, permRead, "list directory"); err != nil {
		return res, err
	}
	var l *listing
	if cookie != 0 {
		l = fs.listings.get(verifier, dir.in.Ino)
	}
	if l == nil && dir.ex.cached() {
		// A non-strict export serves a new listing from a snapshot the
		// consistency mode still trusts, without the origin: the newest
		// in memory, else (memory has none, so meta's is the newest)
		// the one in meta.
		if c := fs.listings.latest(dir.in.Ino); c != nil {
			if fs.usable(dir.ex, c.asked, c.gen) {
				l = c
			}
		} else if l, err = fs.loadListing(ctx, cred, &dir, da); err != nil {
			return res, err
		} else if l != nil {
			fs.listings.add(l)
		}
	}
	fresh := l == nil
	if fresh {
		if l, err = fs.snapshot(ctx, cred, &dir, da); err != nil {
			return res, err
		}
		fs.listings.add(l)
		if dir.ex.cached() && fs.persist != nil {
			fs.persist.listing(dir.ex.stamp(l.asked, l.gen), l)
		}
	}
	res.Verifier = l.verifier
	if cookie > uint64(len(l.entries)) {
		res.EOF = true
		return res, nil
	}
	for i, e := range l.entries[cookie:] {
		if !fresh {
			// The names and cookies of a kept snapshot stay valid, its
			// attributes do not: a client takes READDIRPLUS attributes
			// as newer than any it holds, so old ones would roll back
			// a size or mtime it saw since (a file seemingly shrinking).
			if err := ctx.Err(); err != nil {
				return res, err
			}
			e.Attr = fs.entryAttr(ctx, cred, dir.ex, e.Node.Ino, l.handles[int(cookie)+i])
		}
		if !fn(e) {
			return res, nil
		}
	}
	res.EOF = true
	return res, nil
}

// snapshot reads the whole of dir and maps every entry to its inode.
func (fs *FS) snapshot(ctx context.Context, cred Cred, dir *node, da backend.Attr) (*listing, error) {
	gen, asked := dir.ex.gen.Load(), fs.now()
	var ents []backend.DirEntry
	err := fs.call(ctx, cred, []*node{dir}, func(hs []backend.Handle) error {
		ents = ents[:0]
		return dir.ex.origin.ReadDir(ctx, cred, hs[0], func(e backend.DirEntry) bool {
			ents = append(ents, e)
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	me := make([]meta.Entry, len(ents))
	for i, e := range ents {
		me[i] = meta.Entry{Parent: dir.in.Ino, Name: e.Name, Type: e.Attr.Type, FileID: e.Attr.FileID, Handle: e.Handle}
	}
	ins, err := fs.db.Map(dir.ex.id, me)
	if err != nil {
		return nil, metaErr(err)
	}
	out, hs, err := fs.dots(ctx, cred, dir, da, len(ents))
	if err != nil {
		return nil, err
	}
	for i, e := range ents {
		in := ins[i]
		out = append(out, DirEntry{
			Name: e.Name, Cookie: uint64(len(out) + 1),
			Node: NodeID{Export: dir.ex.id, Ino: in.Ino, Gen: in.Gen},
			Attr: dir.ex.attr(in.Ino, e.Attr),
		})
		hs = append(hs, e.Handle)
		fs.noteOriginAttr(dir.ex, in.Ino, e.Attr, asked, gen)
	}
	return &listing{dir: dir.in.Ino, entries: out, handles: hs, asked: asked, gen: gen}, nil
}

// dots starts a snapshot of dir with room for n more entries: "." and
// "..", where ".." of an export root is the root itself.
func (fs *FS) dots(ctx context.Context, cred Cred, dir *node, da backend.Attr, n int) ([]DirEntry, []backend.Handle, error) {
	parent, pa := dir.in, da
	if dir.in.Parent != 0 {
		p, err := fs.inode(dir.in.Parent)
		if err != nil {
			return nil, nil, fmt.Errorf("parent %d: %w", dir.in.Parent, err)
		}
		pn := node{ex: dir.ex, in: p}
		if pa, err = fs.getattr(ctx, cred, &pn); err != nil {
			return nil, nil, fmt.Errorf("parent %d: %w", dir.in.Parent, err)
		}
		parent = pn.in
	}
	out := make([]DirEntry, 0, n+2)
	hs := make([]backend.Handle, 0, n+2)
	hs = append(hs, dir.in.Handle, parent.Handle)
	out = append(out,
		DirEntry{Name: ".", Cookie: 1, Node: node{ex: dir.ex, in: dir.in}.id(), Attr: dir.ex.attr(dir.in.Ino, da)},
		DirEntry{Name: "..", Cookie: 2, Node: node{ex: dir.ex, in: parent}.id(), Attr: dir.ex.attr(parent.Ino, pa)},
	)
	return out, hs, nil
}

// loadListing returns the listing of dir that meta holds, when it is
// usable, else nil: one read transaction for the names, inode records and
// attributes of all entries. The inode records and attributes go into
// memory (the pages that follow read them from there).
func (fs *FS) loadListing(ctx context.Context, cred Cred, dir *node, da backend.Attr) (*listing, error) {
	if fs.persist == nil {
		return nil, nil
	}
	rec, err := fs.db.Listing(dir.in.Ino)
	if err != nil {
		fs.metaMiss(err, "listing", dir.in.Ino)
		return nil, nil
	}
	if rec.Export != dir.ex.id || !fs.usable(dir.ex, rec.Asked, rec.Gen) {
		return nil, nil
	}
	for _, e := range rec.Entries {
		if e.Inode.Export != dir.ex.id {
			return nil, nil // not ours: a bug elsewhere, do not serve it
		}
	}
	out, hs, err := fs.dots(ctx, cred, dir, da, len(rec.Entries))
	if err != nil {
		return nil, err
	}
	for _, e := range rec.Entries {
		in := e.Inode
		out = append(out, DirEntry{
			Name: e.Name, Cookie: uint64(len(out) + 1),
			Node: NodeID{Export: dir.ex.id, Ino: in.Ino, Gen: in.Gen},
		})
		hs = append(hs, in.Handle)
		fs.inodes.put(in)
		if e.HasAttr && e.Attr.Export == dir.ex.id {
			fs.fresh.loadAttr(in.Ino, attrEntry{a: e.Attr.Attr, asked: e.Attr.Asked, gen: e.Attr.Gen})
		}
	}
	return &listing{dir: dir.in.Ino, entries: out, handles: hs, asked: rec.Asked, gen: rec.Gen}, nil
}

// entryAttr returns the current attributes of a listed object, or the zero
// Attr (sent as "no attributes") when they cannot be had: the entry may
// have gone since the snapshot was taken, which is not the listing's error.
func (fs *FS) entryAttr(ctx context.Context, cred Cred, ex *export, ino uint64, h backend.Handle) Attr {
	if a, ok := fs.freshAttr(ex, ino); ok {
		return ex.attr(ino, a)
	}
	gen, asked := ex.gen.Load(), fs.now()
	a, err := ex.origin.GetAttr(ctx, cred, h)
	if err != nil {
		return Attr{}
	}
	fs.noteOriginAttr(ex, ino, a, asked, gen)
	return ex.attr(ino, a)
}
