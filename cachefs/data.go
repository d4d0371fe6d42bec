package cachefs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/cachefs/internal/flight"
	"github.com/nascache/nascache/chunkstore"
)

// The data cache. A file's data is cut into chunks of chunkSize bytes,
// kept in a chunkstore.Store under (inode, origin version, index). The
// origin version is a digest of the attributes a READ validated (size,
// mtime, ctime, fileid), taken once per READ, so:
//
//   - a changed origin file gets new keys: its old chunks are never served
//     again and age out of the store;
//   - one READ never mixes chunks of two versions;
//   - a chunk is stored only if the origin still has the same version
//     after the chunk was read from it (one GETATTR after the fetch): a
//     file rewritten while it was fetched is served to that READ's caller
//     at most once (the READ is retried with fresh attributes) and never
//     stored under the old version.
//
// A miss is fetched once however many readers wait (flight.Group, keyed
// by chunk); the waiters are answered as soon as the chunk is read, and
// the flight then stores it, staying in flight until the store is done so
// that a reader arriving meanwhile shares the result instead of fetching
// again.
//
// Read-ahead: a per-inode detector sees sequential READs and grows a
// window (1, 2, 4, ... up to ReadAheadMaxChunks chunks) of chunks fetched
// ahead in goroutines the FS owns (stopped and waited for by Close). At
// most half of OriginConcurrency read-ahead fetches run at once; when all
// slots are busy, read-ahead is skipped, never queued.
//
// Lock order: none. seqMu and raMu are leaves, never held together or
// across I/O.

// maxChunkBytes bounds Config.ChunkSizeBytes.
const maxChunkBytes = 64 << 20

// readRetries bounds how often one READ starts over because the origin
// file changed under it before the client gets ErrJukebox (and retries).
const readRetries = 3

// seqTrackedFiles bounds the sequential detector's table; when full it is
// cleared (losing only read-ahead windows, which regrow).
const seqTrackedFiles = 8192

// raTrackedKeys bounds the keys remembered as read ahead, to count the
// ones a READ later uses.
const raTrackedKeys = 8192

// dataCache serves file data from a chunk store, filling it from origins.
type dataCache struct {
	store     *chunkstore.Store
	chunkSize uint64
	raMax     int
	log       zerolog.Logger
	m         *metrics
	flights   *flight.Group[chunkstore.Key, []byte]
	// chunkBufs recycles the chunk-sized buffers fetches read into: a
	// fresh megabyte per fetch cost page faults and zeroing, a fifth of
	// the CPU of a cold read.
	chunkBufs *bufList
	fetchSem  chan struct{} // one token per origin chunk fetch running
	raSem     chan struct{} // one token per read-ahead goroutine

	// life is the lifetime of read-ahead work: cancelled by close. It is
	// a field (not a parameter) because read-ahead outlives the READ that
	// started it.
	life context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // read-ahead goroutines

	seqMu sync.Mutex // guards seq
	seq   map[uint64]*seqState

	// streams are the read streams of ttl exports (stream.go).
	streams *streams

	raMu   sync.Mutex // guards closed, raKeys, raRing, raNext; wg.Add happens under it
	closed bool
	raKeys map[chunkstore.Key]struct{}
	raRing []chunkstore.Key
	raNext int
}

// seqState is what the sequential detector knows of one inode.
type seqState struct {
	next   uint64 // where the last READ ended
	window int    // read-ahead window in chunks; 0: not sequential
}

// chunkBufsKeptBytes bounds the idle chunk buffers kept for fetches.
const chunkBufsKeptBytes = 64 << 20

func newDataCache(cfg Config, log zerolog.Logger, m *metrics) *dataCache {
	life, stop := context.WithCancel(context.Background())
	d := &dataCache{
		store:     cfg.Chunks,
		chunkSize: uint64(cfg.ChunkSizeBytes),
		raMax:     cfg.ReadAheadMaxChunks,
		log:       log,
		m:         m,
		chunkBufs: newBufList(cfg.ChunkSizeBytes, max(2, chunkBufsKeptBytes/cfg.ChunkSizeBytes)),
		fetchSem:  make(chan struct{}, cfg.OriginConcurrency),
		raSem:     make(chan struct{}, max(1, cfg.OriginConcurrency/2)),
		life:      life,
		stop:      stop,
		seq:       make(map[uint64]*seqState),
		streams:   newStreams(),
		raKeys:    make(map[chunkstore.Key]struct{}),
		raRing:    make([]chunkstore.Key, raTrackedKeys),
	}
	d.flights = flight.NewHeld[chunkstore.Key, []byte](d.chunkBufs.put)
	return d
}

// close stops read-ahead and every fetch in flight and waits for them.
func (d *dataCache) close() {
	d.raMu.Lock()
	d.closed = true
	d.raMu.Unlock()
	d.stop()
	d.flights.Close()
	d.wg.Wait()
}

// versionOf is the origin version of a file with attributes a.
func versionOf(a backend.Attr) chunkstore.Version {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], a.SizeBytes)
	binary.LittleEndian.PutUint64(b[8:], uint64(a.Mtime.UnixNano()))
	binary.LittleEndian.PutUint64(b[16:], uint64(a.Ctime.UnixNano()))
	binary.LittleEndian.PutUint64(b[24:], a.FileID)
	return chunkstore.VersionOf(b[:])
}

// chunkLen is the length of chunk idx of a file of size bytes.
func (d *dataCache) chunkLen(size, idx uint64) int {
	start := idx * d.chunkSize
	if start >= size {
		return 0
	}
	return int(min(d.chunkSize, size-start))
}

// read fills buf with the bytes of n at off; the caller clipped len(buf)
// to the size in a (the attributes it validated for this READ).
//
// A READ within one chunk that misses is answered from the fetched chunk's
// buffer itself, without copying it into buf: the result is then that
// buffer's bytes and held is the function that gives it back (nil when
// the result is buf).
func (d *dataCache) read(ctx context.Context, fs *FS, cred Cred, n *node, a backend.Attr, off uint64, buf []byte) (out []byte, held func(), err error) {
	ver := versionOf(a)
	end := off + uint64(len(buf))
	for pos := off; pos < end; {
		idx := pos / d.chunkSize
		start := idx * d.chunkSize
		take := min(end, start+d.chunkSize) - pos
		dst := buf[pos-off : pos-off+take]
		key := chunkstore.Key{Ino: n.in.Ino, Version: ver, Index: idx}
		k, err := d.store.ReadAt(ctx, key, dst, int64(pos-start))
		switch {
		case err == nil || (errors.Is(err, io.EOF) && k == len(dst)):
			d.m.hit(int(take))
			d.noteUsed(key)
			pos += take
			continue
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		case errors.Is(err, io.EOF):
			// Shorter than its version's size: cannot be, so drop it.
			d.log.Warn().Stringer("chunk", key).Int("got", k).Msg("short chunk dropped")
			if rerr := d.store.Remove(ctx, key); rerr != nil {
				d.log.Warn().Err(rerr).Stringer("chunk", key).Msg("remove short chunk")
			}
		case errors.Is(err, chunkstore.ErrNotFound), errors.Is(err, chunkstore.ErrCorrupt):
			// A miss; a corrupt chunk was dropped by the store.
		default:
			d.log.Warn().Err(err).Stringer("chunk", key).Msg("chunk read failed; fetching from origin")
		}
		data, release, err := d.fetch(ctx, fs, cred, *n, a, key)
		if err != nil {
			return nil, nil, err
		}
		d.noteUsed(key)
		d.m.miss(int(take))
		if pos == off && pos+take == end {
			return data[pos-start : pos-start+take], release, nil
		}
		copy(dst, data[pos-start:])
		release()
		pos += take
	}
	return buf, nil, nil
}

// fetch returns chunk key of n (whose validated attributes are a) from
// the cache or, once for all concurrent callers, from the origin, and
// stores it. It fails with errVersionChanged when the origin file is no
// longer the version of key. The bytes are a pooled buffer shared with the
// other callers: read them, then call release (once); they are recycled
// after the last caller released them.
func (d *dataCache) fetch(ctx context.Context, fs *FS, cred Cred, n node, a backend.Attr, key chunkstore.Key) (data []byte, release func(), err error) {
	clen := d.chunkLen(a.SizeBytes, key.Index)
	data, release, _, err = d.flights.DoHeld(ctx, key, func(fctx context.Context, publish flight.Publish[[]byte]) ([]byte, error) {
		// Another flight may have stored it since the caller missed.
		if d.store.Contains(key) {
			b := d.chunkBufs.get()
			if got, err := d.store.Get(fctx, key, b[:0]); err == nil && len(got) == clen {
				return got, nil
			}
			d.chunkBufs.put(b)
		}
		b, err := d.fetchOrigin(fctx, fs, cred, &n, key, clen)
		if err != nil {
			return nil, err
		}
		publish(b, nil)
		if err := d.store.Put(fctx, key, b); err != nil {
			ev := d.log.Warn()
			if errors.Is(err, chunkstore.ErrNoSpace) || errors.Is(err, context.Canceled) {
				ev = d.log.Debug()
			}
			ev.Err(err).Stringer("chunk", key).Msg("chunk not cached")
		}
		return b, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(data) != clen {
		release()
		return nil, nil, fmt.Errorf("chunk %v: %d bytes, want %d: %w", key, len(data), clen, errVersionChanged)
	}
	return data, release, nil
}

// fetchOrigin reads chunk key (clen bytes) from the origin and checks that
// the origin file is still the version of key afterwards.
func (d *dataCache) fetchOrigin(ctx context.Context, fs *FS, cred Cred, n *node, key chunkstore.Key, clen int) ([]byte, error) {
	select {
	case d.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-d.fetchSem }()
	b := d.chunkBufs.get()[:clen]
	got := 0
	start := key.Index * d.chunkSize
	t0 := time.Now()
	// checked: every read of the chunk came with the origin's attributes
	// after it, all of key's version: no GETATTR needed to prove it.
	checked := false
	err := fs.call(ctx, cred, []*node{n}, func(hs []backend.Handle) error {
		got, checked = 0, false
		ar, withAttr := n.ex.origin.(attrReader)
		checked = withAttr
		for got < clen {
			var k int
			var eof bool
			var err error
			if withAttr {
				var a backend.Attr
				var ok bool
				k, eof, a, ok, err = ar.ReadAttr(ctx, cred, hs[0], b[got:], start+uint64(got))
				checked = checked && ok && versionOf(a) == key.Version
			} else {
				k, eof, err = n.ex.origin.Read(ctx, cred, hs[0], b[got:], start+uint64(got))
			}
			got += k
			if err != nil {
				return err
			}
			if eof || k == 0 {
				break
			}
		}
		return nil
	})
	d.m.originRead(time.Since(t0))
	fail := func(err error) ([]byte, error) {
		d.chunkBufs.put(b)
		return nil, err
	}
	if err != nil {
		return fail(fmt.Errorf("fetch chunk %v: %w", key, err))
	}
	if got < clen {
		return fail(fmt.Errorf("fetch chunk %v: origin gave %d of %d bytes: %w", key, got, clen, errVersionChanged))
	}
	if checked {
		return b, nil
	}
	after, err := fs.getattrOrigin(ctx, cred, n)
	if err != nil {
		return fail(fmt.Errorf("fetch chunk %v: check version: %w", key, err))
	}
	if versionOf(after) != key.Version {
		return fail(fmt.Errorf("fetch chunk %v: %w", key, errVersionChanged))
	}
	return b, nil
}

// attrReader is an origin whose reads also return the file's attributes
// as they were right after the read (backend/nfs: READ's post-op
// attributes; backend/local: an fstat), so that a fetched chunk's version
// is proved without a GETATTR. ok is false when they are not known.
type attrReader interface {
	ReadAttr(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (n int, eof bool, a backend.Attr, ok bool, err error)
}

// readAhead starts fetches of the chunks after a sequential READ of n
// that ended at end.
func (d *dataCache) readAhead(fs *FS, cred Cred, n node, a backend.Attr, off, end uint64) {
	if d.raMax <= 0 || end <= off || end >= a.SizeBytes {
		return // nothing after this READ: no detector state for small files
	}
	window := d.sequential(n.in.Ino, off, end)
	if window == 0 || a.SizeBytes == 0 {
		return
	}
	ver := versionOf(a)
	last := (end - 1) / d.chunkSize
	lastOfFile := (a.SizeBytes - 1) / d.chunkSize
	for idx := last + 1; idx <= min(last+uint64(window), lastOfFile); idx++ {
		key := chunkstore.Key{Ino: n.in.Ino, Version: ver, Index: idx}
		if d.store.Contains(key) {
			continue
		}
		select {
		case d.raSem <- struct{}{}:
		default:
			return // the origin is busy enough
		}
		if !d.startReadAhead(key, func() {
			defer func() { <-d.raSem }()
			_, release, err := d.fetch(d.life, fs, cred, n, a, key)
			if err != nil {
				if d.life.Err() == nil {
					d.log.Debug().Err(err).Stringer("chunk", key).Msg("read-ahead failed")
				}
				return
			}
			release()
		}) {
			<-d.raSem
		}
	}
}

// startReadAhead records key as read ahead and runs fn in a goroutine of
// the cache. It returns false, without running fn, when the cache is
// closed or key is already read ahead (the caller then returns its
// read-ahead token itself).
func (d *dataCache) startReadAhead(key chunkstore.Key, fn func()) bool {
	d.raMu.Lock()
	defer d.raMu.Unlock()
	if d.closed {
		return false
	}
	if _, ok := d.raKeys[key]; ok {
		return false // already under way or waiting to be used
	}
	if old := d.raRing[d.raNext]; old != (chunkstore.Key{}) {
		delete(d.raKeys, old)
	}
	d.raRing[d.raNext] = key
	d.raNext = (d.raNext + 1) % len(d.raRing)
	d.raKeys[key] = struct{}{}
	d.m.readAheadIssued.Add(1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn()
	}()
	return true
}

// noteUsed counts a READ's use of a chunk that was read ahead.
func (d *dataCache) noteUsed(key chunkstore.Key) {
	d.raMu.Lock()
	_, ok := d.raKeys[key]
	if ok {
		delete(d.raKeys, key)
	}
	d.raMu.Unlock()
	if ok {
		d.m.readAheadUsed.Add(1)
	}
}

// sequential feeds the detector with a READ of [off, end) of ino and
// returns the read-ahead window in chunks (0: not sequential).
func (d *dataCache) sequential(ino, off, end uint64) int {
	d.seqMu.Lock()
	defer d.seqMu.Unlock()
	st := d.seq[ino]
	if st == nil {
		if len(d.seq) >= seqTrackedFiles {
			clear(d.seq)
		}
		st = &seqState{}
		d.seq[ino] = st
	}
	// The client sends several READs at once, so they may arrive a
	// little out of order: within one chunk of where the last one ended
	// still counts as sequential. A read from offset 0 starts a run.
	seq := off == 0 || (off+d.chunkSize >= st.next && off <= st.next+d.chunkSize)
	switch {
	case !seq:
		st.window = 0
	case st.window == 0:
		st.window = 1
	case end/d.chunkSize > st.next/d.chunkSize:
		st.window = min(st.window*2, d.raMax)
	}
	if seq {
		st.next = max(st.next, end)
	} else {
		st.next = end
	}
	return st.window
}

// invalidate drops every cached chunk of ino (after a write through
// nascache; the new origin version alone would hide them, this frees
// the space at once).
func (d *dataCache) invalidate(ctx context.Context, ino uint64) {
	d.seqMu.Lock()
	delete(d.seq, ino)
	d.seqMu.Unlock()
	d.streams.drop(ino)
	if _, err := d.store.RemoveInode(context.WithoutCancel(ctx), ino); err != nil {
		d.log.Warn().Err(err).Uint64("ino", ino).Msg("drop cached chunks")
	}
}

// WaitIdle waits until read-ahead and every chunk fetch, including the
// store of what it fetched, have finished. It is for callers whose figures
// must be exact between two steps (tests, the demo's self-check); nothing
// may read concurrently.
func (fs *FS) WaitIdle() {
	if fs.data != nil {
		fs.data.wg.Wait()
		fs.data.flights.Wait()
	}
}
