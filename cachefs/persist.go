package cachefs

import (
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/meta"
)

// The batch writer of the freshness tier (fresh.go explains what is
// persisted and why it is never served stale).
//
// Calls queue what the origin answered; nothing on a call's path waits
// for meta. The queue coalesces by key (the last answer for an inode, a
// name or a directory wins) and is bounded: an origin answer for a new key
// is dropped when maxQueued records wait; a must-keep record (attributes
// of a change made through nascache, or the drop of out-of-date ones) is
// refused only at twice that, and the caller then retires the export
// instead.
//
// One goroutine, started when the first record is queued and ending when
// the queue is empty, commits: it waits flushInterval or until a batch
// worth (batchRecords) is queued, then writes everything queued, attributes
// and lookups batchRecords per transaction and each listing through
// meta.WriteListing. close stops it, waits, and writes what is left, so a
// clean shutdown loses nothing.
//
// Lock order: commitMu before mu. commitMu keeps commits in queue order
// (close and tests flush while the goroutine may be committing); mu
// guards the queue and is never held across a meta call.

// batchRecords is the most attribute and lookup records one transaction
// writes, and the queue length that wakes the writer early.
const batchRecords = 16384

type queuedAttr struct {
	rec  meta.AttrRecord
	drop bool // delete what meta holds instead
	must bool
}

type queuedListing struct {
	stamp meta.Stamp
	l     *listing
}

type persister struct {
	db            *meta.DB
	log           zerolog.Logger
	maxQueued     int
	flushInterval time.Duration
	// onLost is called when a write holding must-keep records failed.
	onLost func()
	m      *metrics

	commitMu sync.Mutex // held by whoever commits; see the lock order

	mu       sync.Mutex // guards everything below; wg.Add happens under it
	attrs    map[uint64]queuedAttr
	lookups  map[lookupKey]meta.LookupRecord
	listings map[uint64]queuedListing
	queued   int // records queued; a listing counts its entries
	// committing are the attributes being written now: still visible to
	// pendingAttr until meta has them.
	committing map[uint64]queuedAttr
	running    bool
	closed     bool
	dropped    uint64 // origin answers not queued because the queue was full
	full       chan struct{}
	stop       chan struct{}
	wg         sync.WaitGroup
}

func newPersister(db *meta.DB, log zerolog.Logger, maxQueued int, flushInterval time.Duration, onLost func(), m *metrics) *persister {
	p := &persister{
		db: db, log: log, maxQueued: maxQueued, flushInterval: flushInterval, onLost: onLost, m: m,
		full: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	p.resetLocked()
	return p
}

func (p *persister) resetLocked() {
	p.attrs = make(map[uint64]queuedAttr)
	p.lookups = make(map[lookupKey]meta.LookupRecord)
	p.listings = make(map[uint64]queuedListing)
	p.queued = 0
}

// admitLocked decides whether n new records may be queued and starts the
// writer when they may. The callers return early once closed (no call may
// follow Close).
func (p *persister) admitLocked(n int, must bool) bool {
	limit := p.maxQueued
	if must {
		limit *= 2
	}
	if p.queued+n > limit {
		if !must {
			p.dropped++
			p.m.persistDropped.Add(1)
		}
		return false
	}
	p.queued += n
	if !p.running {
		p.running = true
		p.wg.Add(1)
		go p.run()
	}
	if p.queued >= batchRecords {
		select {
		case p.full <- struct{}{}:
		default:
		}
	}
	return true
}

// attr queues the attributes of ino. It reports false only for a
// must-keep record the queue could not take.
func (p *persister) attr(ino uint64, rec meta.AttrRecord, must bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return true
	}
	old, ok := p.attrs[ino]
	if !ok && !p.admitLocked(1, must) {
		return !must
	}
	p.attrs[ino] = queuedAttr{rec: rec, must: must || old.must}
	return true
}

// dropAttr queues the deletion of the attributes meta holds for ino. It
// reports false when the queue could not take it.
func (p *persister) dropAttr(ino uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return true
	}
	if _, ok := p.attrs[ino]; !ok && !p.admitLocked(1, true) {
		return false
	}
	p.attrs[ino] = queuedAttr{drop: true, must: true}
	return true
}

// lookup queues the answer for name in dir.
func (p *persister) lookup(dir uint64, name string, rec meta.LookupRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	k := lookupKey{dir, name}
	if _, ok := p.lookups[k]; !ok && !p.admitLocked(1, false) {
		return
	}
	p.lookups[k] = rec
}

// listing queues the complete listing l of its directory.
func (p *persister) listing(stamp meta.Stamp, l *listing) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	old, ok := p.listings[l.dir]
	if ok {
		p.queued -= len(old.l.entries)
	}
	if !p.admitLocked(len(l.entries), false) {
		if ok {
			p.queued += len(old.l.entries) // keep the older one
		}
		return
	}
	p.listings[l.dir] = queuedListing{stamp: stamp, l: l}
}

// pendingAttr returns the attributes of ino that are queued or being
// written, newer than what meta holds.
func (p *persister) pendingAttr(ino uint64) (attrEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.attrs[ino]
	if !ok {
		q, ok = p.committing[ino]
	}
	switch {
	case !ok:
		return attrEntry{}, false
	case q.drop:
		return attrEntry{void: true, gen: voidGen}, true
	}
	return attrEntry{a: q.rec.Attr, asked: q.rec.Asked, gen: q.rec.Gen}, true
}

// run is the writer goroutine.
func (p *persister) run() {
	defer p.wg.Done()
	t := time.NewTimer(p.flushInterval)
	defer t.Stop()
	for {
		select {
		case <-p.full:
		case <-t.C:
		case <-p.stop:
			return
		}
		if !p.flush(true) {
			return
		}
		t.Reset(p.flushInterval)
	}
}

// flush writes everything queued. From the writer goroutine (exitIfIdle)
// it ends the goroutine's run, reporting false, when nothing is queued.
func (p *persister) flush(exitIfIdle bool) bool {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.mu.Lock()
	if p.queued == 0 && len(p.attrs) == 0 {
		if exitIfIdle {
			p.running = false
		}
		p.mu.Unlock()
		return false
	}
	attrs, lookups, listings := p.attrs, p.lookups, p.listings
	p.committing = attrs
	p.resetLocked()
	p.mu.Unlock()

	p.commit(attrs, lookups, listings)

	p.mu.Lock()
	p.committing = nil
	p.mu.Unlock()
	return true
}

// commit writes one swapped-out queue. Errors are logged: a record that
// did not reach meta is only a colder cache, except a must-keep one, see
// below.
func (p *persister) commit(attrs map[uint64]queuedAttr, lookups map[lookupKey]meta.LookupRecord, listings map[uint64]queuedListing) {
	b := meta.FreshBatch{Attrs: make([]meta.AttrPut, 0, min(len(attrs), batchRecords))}
	must := false // b holds a must-keep record
	write := func() {
		if len(b.Attrs)+len(b.DropAttrs)+len(b.Lookups) == 0 {
			return
		}
		n := len(b.Attrs) + len(b.DropAttrs) + len(b.Lookups)
		if _, err := p.db.WriteFresh(b); err != nil {
			p.m.persistErrors.Add(1)
			p.log.Error().Err(err).Msg("persist cached answers")
			if must {
				// meta may hold attributes a lost record superseded.
				p.onLost()
			}
		} else {
			p.m.persistWritten.Add(uint64(n))
		}
		b, must = meta.FreshBatch{}, false
	}
	for ino, q := range attrs {
		must = must || q.must
		if q.drop {
			b.DropAttrs = append(b.DropAttrs, ino)
		} else {
			b.Attrs = append(b.Attrs, meta.AttrPut{Ino: ino, Rec: q.rec})
		}
		if len(b.Attrs)+len(b.DropAttrs) >= batchRecords {
			write()
		}
	}
	for k, rec := range lookups {
		b.Lookups = append(b.Lookups, meta.LookupPut{Dir: k.dir, Name: k.name, Rec: rec})
		if len(b.Attrs)+len(b.DropAttrs)+len(b.Lookups) >= batchRecords {
			write()
		}
	}
	write()
	for dir, q := range listings {
		names := make([]meta.ListedName, 0, len(q.l.entries))
		for _, e := range q.l.entries[2:] { // without "." and ".."
			names = append(names, meta.ListedName{Name: e.Name, Ino: e.Node.Ino})
		}
		if _, err := p.db.WriteListing(dir, q.stamp, names); err != nil {
			p.m.persistErrors.Add(1)
			p.log.Warn().Err(err).Uint64("dir", dir).Msg("persist listing")
		} else {
			p.m.persistWritten.Add(uint64(len(names)) + 1)
		}
	}
}

// close stops the writer, waits for it and writes what is still queued.
func (p *persister) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.mu.Unlock()
	p.wg.Wait()
	p.flush(false)
	p.mu.Lock()
	if p.dropped > 0 {
		p.log.Info().Uint64("dropped", p.dropped).Msg("meta write queue was full at times: some answers were not persisted")
	}
	p.mu.Unlock()
}
