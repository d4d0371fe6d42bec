package cachefs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/meta"
	"github.com/rs/zerolog"
)

// maxHealDepth bounds how far up the parent chain a stale handle is
// re-resolved (a deeper tree is healed by later calls, level by level).
const maxHealDepth = 256

// FS is the file system nfsserver serves. All methods are safe for
// concurrent use.
type FS struct {
	// readBufs holds buffers of maxReadBytes for large READs (readBuf).
	readBufs *bufList
	db       *meta.DB
	log      zerolog.Logger
	exports  map[uint16]*export
	inodes   *inodeCache
	listings *listingCache
	m        *metrics
	now      func() time.Time
	fresh    *freshCache
	// persist writes attributes, lookups and listings to meta; nil when
	// Config.PersistQueueEntries is negative.
	persist *persister
	// data is the chunk cache; nil when Config.Chunks is nil.
	data *dataCache
}

// export is one served export.
type export struct {
	id          uint16
	path        string
	origin      backend.Origin
	fsid        uint64
	consistency Consistency
	// gen counts namespace changes made through nascache; cached
	// attributes, lookups and listings of older generations are not used.
	// It lives in meta, which keeps it across restarts (fresh.go).
	gen *meta.Generation
}

// New returns an FS serving cfg.Exports with inode records in db. It
// starts nothing (the meta writer starts when there is something to
// write, and Close stops it); the caller keeps ownership of db and of
// the origins, and closes db after the FS.
func New(cfg Config, db *meta.DB, logger zerolog.Logger) (*FS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("cachefs: no meta db: %w", ErrInvalid)
	}
	cfg.ensureDefaults()
	fs := &FS{
		readBufs: newBufList(maxReadBytes, readBufKept),
		db:       db,
		log:      logger,
		exports:  make(map[uint16]*export, len(cfg.Exports)),
		inodes:   newInodeCache(cfg.InodeCacheEntries),
		listings: newListingCache(cfg.ListingCacheSnapshots, cfg.ListingCacheEntries, uint64(time.Now().UnixNano())),
		m:        newMetrics(),
		now:      cfg.Now,
		fresh:    newFreshCache(cfg.FreshCacheEntries),
	}
	for _, e := range cfg.Exports {
		ex := &export{id: e.ID, path: e.Path, origin: e.Origin, fsid: fsidOf(e.ID), consistency: e.Consistency, gen: db.Generation(e.ID)}
		fs.exports[e.ID] = ex
		// Answers meta keeps were taken under the mode recorded with
		// them; under another they may not be trusted (fresh.go).
		changed, err := db.SetConsistency(e.ID, e.Consistency.String())
		if err != nil {
			return nil, fmt.Errorf("cachefs: export %s: %w", e.Path, err)
		}
		if changed {
			ex.gen.BeginChange()
			ex.gen.EndChange()
		}
	}
	if cfg.PersistQueueEntries > 0 {
		fs.persist = newPersister(db, logger, cfg.PersistQueueEntries, cfg.PersistFlushInterval, fs.retireAll, fs.m)
		fs.fresh.onDrop = fs.persistDrop
	}
	if err := fs.m.register(cfg.Registry, fs.Stats); err != nil {
		return nil, fmt.Errorf("cachefs: register metrics: %w", err)
	}
	if cfg.Chunks != nil {
		fs.data = newDataCache(cfg, logger, fs.m)
		// Pins live in memory in the store; meta has the list.
		if err := fs.applyPins(); err != nil {
			fs.data.close()
			return nil, fmt.Errorf("cachefs: re-apply pins: %w", err)
		}
	}
	return fs, nil
}

// fsidOf derives the FSID clients see for an export: distinct per export,
// stable across restarts, and never that of another NFS export of this
// server. "nc" in the top bytes keeps it clear of small numbers a kernel
// may treat specially.
func fsidOf(id uint16) uint64 { return 0x6e63<<48 | uint64(id) }

// retireAll retires the cached answers of every export.
func (fs *FS) retireAll() {
	for _, ex := range fs.exports {
		fs.retire(ex)
	}
}

// Close stops read-ahead and the chunk fetches in flight, waits for them,
// writes what waits for meta and stops its writer, and drops the
// in-memory caches. It does not close the origins, the chunk store or the
// meta db, which the caller owns and closes after it. No call may follow.
func (fs *FS) Close() error {
	if fs.data != nil {
		fs.data.close()
	}
	if fs.persist != nil {
		fs.persist.close()
	}
	fs.inodes.clear()
	fs.listings.clear()
	fs.fresh.clear()
	return nil
}

// String formats a NodeID for errors and logs.
func (n NodeID) String() string { return fmt.Sprintf("%d:%d:%d", n.Export, n.Ino, n.Gen) }

// node is a NodeID resolved against meta.
type node struct {
	ex *export
	in meta.Inode
}

func (n node) id() NodeID { return NodeID{Export: n.ex.id, Ino: n.in.Ino, Gen: n.in.Gen} }

// inode returns the record of ino, from the cache or meta.
func (fs *FS) inode(ino uint64) (meta.Inode, error) {
	if in, ok := fs.inodes.get(ino); ok {
		return in, nil
	}
	in, err := fs.db.Get(ino)
	if err != nil {
		return meta.Inode{}, metaErr(err)
	}
	fs.inodes.put(in)
	return in, nil
}

// metaErr classes a meta error: a missing record is a stale node,
// anything else (corruption, I/O) is an I/O error for the client.
func metaErr(err error) error {
	if errors.Is(err, meta.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrStale, err)
	}
	return fmt.Errorf("%w: %w", ErrIO, err)
}

// resolve validates n: its export is served, its inode exists, belongs to
// that export and has that generation.
func (fs *FS) resolve(n NodeID) (node, error) {
	ex := fs.exports[n.Export]
	if ex == nil {
		return node{}, fmt.Errorf("export %d not served: %w", n.Export, ErrStale)
	}
	in, err := fs.inode(n.Ino)
	if err != nil {
		return node{}, err
	}
	if in.Export != n.Export || in.Gen != n.Gen {
		return node{}, fmt.Errorf("inode %d is %d:%d: %w", n.Ino, in.Export, in.Gen, ErrStale)
	}
	return node{ex: ex, in: in}, nil
}

// attr turns origin attributes of n's object into served ones.
func (ex *export) attr(ino uint64, a backend.Attr) Attr {
	return Attr{
		Type: a.Type, Mode: a.Mode & 0o7777, Nlink: a.Nlink, UID: a.UID, GID: a.GID,
		SizeBytes: a.SizeBytes, UsedBytes: a.UsedBytes, RdevMajor: a.RdevMajor, RdevMinor: a.RdevMinor,
		FSID: ex.fsid, FileID: ino, Atime: a.Atime, Mtime: a.Mtime, Ctime: a.Ctime,
	}
}

func preAttr(a backend.Attr) *PreAttr {
	return &PreAttr{SizeBytes: a.SizeBytes, Mtime: a.Mtime, Ctime: a.Ctime}
}

// call runs fn with the origin handles of nodes. When the origin says a
// handle is stale (a local origin's path moved), the stale nodes are
// re-resolved from their parent chain in meta and fn is retried once.
// fn receives the handles in the order of nodes.
func (fs *FS) call(ctx context.Context, cred Cred, nodes []*node, fn func(hs []backend.Handle) error) error {
	hs := make([]backend.Handle, len(nodes))
	for i, n := range nodes {
		hs[i] = n.in.Handle
	}
	err := fn(hs)
	if !errors.Is(err, backend.ErrStale) {
		return err
	}
	healed := false
	for i, n := range nodes {
		if _, gerr := n.ex.origin.GetAttr(ctx, cred, n.in.Handle); !errors.Is(gerr, backend.ErrStale) {
			continue
		}
		in, herr := fs.heal(ctx, cred, n.ex, n.in, 0)
		if herr != nil {
			return fmt.Errorf("%w: %w", ErrStale, herr)
		}
		n.in, hs[i], healed = in, in.Handle, true
	}
	if !healed {
		return fmt.Errorf("%w: %w", ErrStale, err)
	}
	if err := fn(hs); err != nil {
		if errors.Is(err, backend.ErrStale) {
			return fmt.Errorf("%w: %w", ErrStale, err)
		}
		return err
	}
	return nil
}

// heal re-resolves the origin handle of in through its parent: the
// parent's handle (healed first if it is stale too) and a Lookup of the
// recorded name, which must find the same FileID. meta is updated.
func (fs *FS) heal(ctx context.Context, cred Cred, ex *export, in meta.Inode, depth int) (meta.Inode, error) {
	if depth > maxHealDepth {
		return meta.Inode{}, fmt.Errorf("heal inode %d: parent chain deeper than %d", in.Ino, maxHealDepth)
	}
	if in.Parent == 0 {
		h, a, err := ex.origin.Root(ctx)
		if err != nil {
			return meta.Inode{}, fmt.Errorf("heal root inode %d: %w", in.Ino, err)
		}
		out, err := fs.db.Root(ex.id, h, a.FileID)
		if err != nil {
			return meta.Inode{}, fmt.Errorf("heal root inode %d: %w", in.Ino, metaErr(err))
		}
		fs.inodes.put(out)
		return out, nil
	}
	parent, err := fs.inode(in.Parent)
	if err != nil {
		return meta.Inode{}, fmt.Errorf("heal inode %d: parent %d: %w", in.Ino, in.Parent, err)
	}
	h, a, err := ex.origin.Lookup(ctx, cred, parent.Handle, in.Name)
	if errors.Is(err, backend.ErrStale) {
		if parent, err = fs.heal(ctx, cred, ex, parent, depth+1); err != nil {
			return meta.Inode{}, err
		}
		h, a, err = ex.origin.Lookup(ctx, cred, parent.Handle, in.Name)
	}
	name := in.Name
	if (err == nil && a.FileID != in.FileID) || errors.Is(err, backend.ErrNotExist) {
		// The recorded name is gone or names another object now. The
		// object may live on under another name in the same directory:
		// a hard link whose recorded name was removed or renamed over
		// (REMOVE of one link keeps the inode), or a rename made behind
		// our back. Links in other directories are not searched.
		if e, ok, ferr := fs.findByFileID(ctx, cred, ex, parent.Handle, in); ferr == nil && ok {
			name, h, a, err = e.Name, e.Handle, e.Attr, nil
		}
	}
	if err != nil {
		return meta.Inode{}, fmt.Errorf("heal inode %d (%q in %d): %w", in.Ino, in.Name, in.Parent, err)
	}
	if a.FileID != in.FileID {
		return meta.Inode{}, fmt.Errorf("heal inode %d: %q in %d is now fileid %d, was %d", in.Ino, in.Name, in.Parent, a.FileID, in.FileID)
	}
	out, err := fs.db.Relocate(in.Ino, in.Parent, name, h)
	if err != nil {
		return meta.Inode{}, fmt.Errorf("heal inode %d: %w", in.Ino, metaErr(err))
	}
	fs.inodes.put(out)
	fs.log.Debug().Uint64("ino", in.Ino).Str("name", name).Msg("re-resolved stale origin handle")
	return out, nil
}

// findByFileID looks through the directory dir for an entry that is the
// object of in (same FileID and type).
func (fs *FS) findByFileID(ctx context.Context, cred Cred, ex *export, dir backend.Handle, in meta.Inode) (backend.DirEntry, bool, error) {
	var found backend.DirEntry
	ok := false
	err := ex.origin.ReadDir(ctx, cred, dir, func(e backend.DirEntry) bool {
		if e.Attr.FileID == in.FileID && e.Attr.Type == in.Type {
			found, ok = e, true
			return false
		}
		return true
	})
	return found, ok, err
}

// getattr returns n's attributes: cached ones while the export's
// consistency allows, else the origin's (healing a stale handle).
func (fs *FS) getattr(ctx context.Context, cred Cred, n *node) (backend.Attr, error) {
	if a, ok := fs.freshAttr(n.ex, n.in.Ino); ok {
		return a, nil
	}
	return fs.getattrOrigin(ctx, cred, n)
}

// getattrOrigin asks the origin for n's attributes and caches them.
func (fs *FS) getattrOrigin(ctx context.Context, cred Cred, n *node) (backend.Attr, error) {
	gen, asked := n.ex.gen.Load(), fs.now()
	fs.m.attrMisses.Add(1)
	var a backend.Attr
	err := fs.call(ctx, cred, []*node{n}, func(hs []backend.Handle) error {
		var err error
		a, err = n.ex.origin.GetAttr(ctx, cred, hs[0])
		return err
	})
	if err == nil {
		fs.noteOriginAttr(n.ex, n.in.Ino, a, asked, gen)
	}
	return a, err
}

// mapEntry maps an object found under name in dir to its inode.
func (fs *FS) mapEntry(dir *node, name string, h backend.Handle, a backend.Attr) (meta.Inode, error) {
	ins, err := fs.db.Map(dir.ex.id, []meta.Entry{{Parent: dir.in.Ino, Name: name, Type: a.Type, FileID: a.FileID, Handle: h}})
	if err != nil {
		return meta.Inode{}, metaErr(err)
	}
	fs.inodes.put(ins[0])
	return ins[0], nil
}

// forget drops the inode of an object that no longer exists at the
// origin (its last link was removed), so its handles turn stale.
func (fs *FS) forget(ex *export, a backend.Attr) error {
	in, err := fs.db.ByFileID(ex.id, a.FileID)
	if errors.Is(err, meta.ErrNotFound) {
		return nil
	}
	if err != nil {
		return metaErr(err)
	}
	if err := fs.db.Forget(in.Ino); err != nil {
		return metaErr(err)
	}
	fs.inodes.drop(in.Ino)
	fs.fresh.dropAttr(in.Ino) // meta dropped its record in Forget
	if fs.data != nil {
		fs.data.invalidate(context.Background(), in.Ino)
	}
	return nil
}

// Stats returns a snapshot of the cache's figures.
func (fs *FS) Stats() Stats {
	m := fs.m
	st := Stats{
		ChunkHits: m.chunkHits.Load(), ChunkMisses: m.chunkMisses.Load(),
		CacheBytesServed: m.cacheBytes.Load(), OriginBytesServed: m.originBytes.Load(),
		OriginFetches:   m.originFetches.Load(),
		ReadAheadIssued: m.readAheadIssued.Load(), ReadAheadUsed: m.readAheadUsed.Load(),
		AttrHits: m.attrHits.Load(), AttrMisses: m.attrMisses.Load(),
	}
	if st.OriginFetches > 0 {
		st.OriginReadAvg = time.Duration(m.originNanos.Load() / st.OriginFetches)
	}
	if fs.data != nil {
		cs := fs.data.store.Stats()
		st.DataCache = true
		st.CapacityBytes, st.CachedBytes, st.PinnedBytes = cs.CapacityBytes, cs.CachedBytes, cs.PinnedBytes
		st.EffectiveCapacityBytes, st.DiskFullWrites, st.OpenFiles = cs.EffectiveCapacityBytes, cs.DiskFullWrites, cs.OpenFiles
		st.Chunks, st.Evictions, st.CorruptChunks = cs.Chunks, cs.Evictions, cs.Corrupt
	}
	for _, ex := range fs.exports {
		st.Exports = append(st.Exports, ExportStats{Path: ex.path, Consistency: ex.consistency.String()})
	}
	slices.SortFunc(st.Exports, func(a, b ExportStats) int { return strings.Compare(a.Path, b.Path) })
	return st
}

// checkName validates a name a client sends, as NFS would.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name: %w", ErrInvalid)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains / or NUL: %w", name, ErrInvalid)
	case len(name) > 255:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	}
	return nil
}

// checkNewName validates the name of an object to be made or moved.
func checkNewName(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if name == "." || name == ".." {
		return fmt.Errorf("name %q: %w", name, ErrExist)
	}
	return nil
}

// checkOldName validates the name of an object to be removed or moved.
func checkOldName(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if name == "." || name == ".." {
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	}
	return nil
}
