package cachefs

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/chunkstore"
	"github.com/nascache/nascache/meta"
)

// WarmOptions tune Warm.
type WarmOptions struct {
	// Pin keeps the warmed files' data from being evicted (until they
	// change or are removed). Pins are kept in meta and survive restarts.
	Pin bool
	// Parallelism bounds the directories listed and chunks fetched at
	// once (8 when zero or negative).
	Parallelism int
}

// WarmProgress counts a warm's work. The totals grow while the tree is
// walked.
type WarmProgress struct {
	FilesDone, FilesTotal, BytesDone, BytesTotal, Errors int64
}

// defaultWarmParallelism is WarmOptions.Parallelism when not set.
const defaultWarmParallelism = 8

// warmMapBatch bounds the entries mapped to inodes per meta transaction.
const warmMapBatch = 4096

// warmCred is who a warm reads as: root (the admin API is local and
// privileged; an NFS origin that squashes root may refuse some files,
// which are counted as errors).
var warmCred = Cred{}

// Warm loads every chunk of every regular file under path (slash
// separated, relative to the root of the export mounted at exportPath;
// "" or "." is the whole export) into the cache. Chunks already cached
// are skipped, so a warm that was stopped can be run again to finish.
// Per-file failures are counted in Errors and do not stop the walk; a
// cancelled ctx stops it and returns ctx's error with the counts so far.
// progress, if not nil, is called from any goroutine after each file.
func (fs *FS) Warm(ctx context.Context, exportPath, path string, opts WarmOptions, progress func(WarmProgress)) (WarmProgress, error) {
	p, err := fs.warm(ctx, exportPath, path, opts, progress)
	if err != nil {
		return p, fmt.Errorf("warm %s %q: %w", exportPath, path, err)
	}
	return p, nil
}

// warmer is one Warm's state.
type warmer struct {
	fs       *FS
	ex       *export
	opts     WarmOptions
	progress func(WarmProgress)
	g        *errgroup.Group
	ctx      context.Context // the errgroup's; the walk's lifetime

	filesDone, filesTotal, bytesDone, bytesTotal, errs atomic.Int64
}

func (w *warmer) snapshot() WarmProgress {
	return WarmProgress{
		FilesDone: w.filesDone.Load(), FilesTotal: w.filesTotal.Load(),
		BytesDone: w.bytesDone.Load(), BytesTotal: w.bytesTotal.Load(),
		Errors: w.errs.Load(),
	}
}

func (fs *FS) warm(ctx context.Context, exportPath, rel string, opts WarmOptions, progress func(WarmProgress)) (WarmProgress, error) {
	if fs.data == nil {
		return WarmProgress{}, fmt.Errorf("no data cache configured: %w", ErrNotSupported)
	}
	var ex *export
	for _, e := range fs.exports {
		if e.path == exportPath {
			ex = e
		}
	}
	if ex == nil {
		return WarmProgress{}, fmt.Errorf("no such export: %w", ErrNotExist)
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = defaultWarmParallelism
	}
	start, err := fs.warmTarget(ctx, ex, rel)
	if err != nil {
		return WarmProgress{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallelism)
	w := &warmer{fs: fs, ex: ex, opts: opts, progress: progress, g: g, ctx: gctx}
	n := start
	a, err := fs.getattr(ctx, warmCred, &n)
	if err != nil {
		return WarmProgress{}, err
	}
	switch a.Type {
	case backend.TypeDirectory:
		w.spawn(func() { w.dir(n) })
	case backend.TypeRegular:
		w.filesTotal.Add(1)
		w.bytesTotal.Add(int64(a.SizeBytes))
		w.file(n, a)
	default:
		return WarmProgress{}, fmt.Errorf("a %s holds no data: %w", a.Type, ErrInvalid)
	}
	_ = g.Wait() // the tasks return nil; errors are counted
	p := w.snapshot()
	if err := ctx.Err(); err != nil {
		return p, err
	}
	return p, nil
}

// warmTarget resolves rel under the export root.
func (fs *FS) warmTarget(ctx context.Context, ex *export, rel string) (node, error) {
	id, _, err := fs.Root(ctx, ex.id)
	if err != nil {
		return node{}, err
	}
	clean := path.Clean("/" + rel)
	for _, name := range strings.Split(strings.TrimPrefix(clean, "/"), "/") {
		if name == "" {
			continue
		}
		id, _, _, err = fs.lookup(ctx, warmCred, id, name)
		if err != nil {
			return node{}, err
		}
	}
	return fs.resolve(id)
}

// spawn runs fn in the group, or inline when every slot is busy: a task
// that spawns more never waits for a slot its own ancestors hold.
func (w *warmer) spawn(fn func()) {
	if !w.g.TryGo(func() error { fn(); return nil }) {
		fn()
	}
}

// fail counts a failure; cancellation is not one.
func (w *warmer) fail(err error, what string, ino uint64) {
	if w.ctx.Err() != nil {
		return
	}
	w.errs.Add(1)
	w.fs.log.Warn().Err(err).Uint64("ino", ino).Msg(what)
}

// dir lists d at the origin, maps its entries to inodes and warms them.
func (w *warmer) dir(d node) {
	if w.ctx.Err() != nil {
		return
	}
	var ents []backend.DirEntry
	err := w.fs.call(w.ctx, warmCred, []*node{&d}, func(hs []backend.Handle) error {
		ents = ents[:0]
		return d.ex.origin.ReadDir(w.ctx, warmCred, hs[0], func(e backend.DirEntry) bool {
			ents = append(ents, e)
			return true
		})
	})
	if err != nil {
		w.fail(err, "warm: list directory", d.in.Ino)
		return
	}
	for len(ents) > 0 {
		batch := ents[:min(len(ents), warmMapBatch)]
		ents = ents[len(batch):]
		me := make([]meta.Entry, 0, len(batch))
		keep := batch[:0:0]
		for _, e := range batch {
			if e.Attr.Type == backend.TypeRegular || e.Attr.Type == backend.TypeDirectory {
				me = append(me, meta.Entry{Parent: d.in.Ino, Name: e.Name, Type: e.Attr.Type, FileID: e.Attr.FileID, Handle: e.Handle})
				keep = append(keep, e)
			}
		}
		ins, err := w.fs.db.Map(d.ex.id, me)
		if err != nil {
			w.fail(metaErr(err), "warm: map entries", d.in.Ino)
			return
		}
		for i, e := range keep {
			w.fs.inodes.put(ins[i])
			n := node{ex: d.ex, in: ins[i]}
			if e.Attr.Type == backend.TypeDirectory {
				w.spawn(func() { w.dir(n) })
				continue
			}
			w.filesTotal.Add(1)
			w.bytesTotal.Add(int64(e.Attr.SizeBytes))
			w.spawn(func() { w.file(n, e.Attr) })
		}
	}
}

// file loads every chunk of n (attributes a, from the listing) that the
// cache lacks, pinning n first when asked.
func (w *warmer) file(n node, a backend.Attr) {
	if w.ctx.Err() != nil {
		return
	}
	d := w.fs.data
	if w.opts.Pin {
		if err := w.fs.db.SetPinned(n.in.Ino, true); err != nil {
			w.fail(metaErr(err), "warm: record pin", n.in.Ino)
			return
		}
		d.store.Pin(n.in.Ino)
	}
	ver := versionOf(a)
	// Chunks of older versions are unreachable; drop them now rather
	// than wait for eviction (which never comes while pinned).
	if _, err := d.store.RemoveStale(w.ctx, n.in.Ino, ver); err != nil && w.ctx.Err() == nil {
		w.fs.log.Debug().Err(err).Uint64("ino", n.in.Ino).Msg("warm: drop stale chunks")
	}
	chunks := (a.SizeBytes + d.chunkSize - 1) / d.chunkSize
	var failed atomic.Bool
	left := atomic.Int64{}
	left.Store(int64(chunks) + 1) // +1: released after the loop
	done := func() {
		if left.Add(-1) != 0 {
			return
		}
		if failed.Load() {
			w.errs.Add(1)
		}
		w.filesDone.Add(1)
		if w.progress != nil {
			w.progress(w.snapshot())
		}
	}
	for idx := uint64(0); idx < chunks; idx++ {
		key := chunkstore.Key{Ino: n.in.Ino, Version: ver, Index: idx}
		clen := int64(d.chunkLen(a.SizeBytes, idx))
		if d.store.Contains(key) {
			w.bytesDone.Add(clen)
			done()
			continue
		}
		w.spawn(func() {
			defer done()
			if w.ctx.Err() != nil {
				return
			}
			_, release, err := d.fetch(w.ctx, w.fs, warmCred, n, a, key)
			if err != nil {
				if w.ctx.Err() == nil && !failed.Swap(true) {
					w.fs.log.Warn().Err(err).Uint64("ino", n.in.Ino).Msg("warm: fetch chunk")
				}
				return
			}
			release()
			w.bytesDone.Add(clen)
		})
	}
	done()
}

// applyPins re-applies the pins recorded in meta to the chunk store.
func (fs *FS) applyPins() error {
	inos, err := fs.db.Pinned()
	if err != nil {
		return metaErr(err)
	}
	for _, ino := range inos {
		fs.data.store.Pin(ino)
	}
	return nil
}
