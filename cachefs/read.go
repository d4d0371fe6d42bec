package cachefs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nascache/nascache/backend"
)

// The read path. readData is the only place file data is fetched: from
// the chunk cache (data.go) when one is configured, else straight from
// the origin.

// maxReadBytes bounds one READ (FSINFO advertises 1 MiB; a larger count
// is clipped, as RFC 1813 allows).
const maxReadBytes = 1 << 20

// Read reads up to count bytes of n from off.
func (fs *FS) Read(ctx context.Context, cred Cred, id NodeID, off uint64, count uint32) (ReadResult, error) {
	res, err := fs.read(ctx, cred, id, off, count)
	if err != nil {
		return ReadResult{}, fmt.Errorf("read %s at %d+%d: %w", id, off, count, err)
	}
	return res, nil
}

func (fs *FS) read(ctx context.Context, cred Cred, id NodeID, off uint64, count uint32) (ReadResult, error) {
	for try := 1; ; try++ {
		res, err := fs.readOnce(ctx, cred, id, off, count)
		if !errors.Is(err, errVersionChanged) {
			return res, err
		}
		// The attributes this READ trusted are out of date.
		fs.fresh.dropAttr(id.Ino)
		if fs.data != nil {
			fs.data.streams.drop(id.Ino)
		}
		if try == readRetries {
			return ReadResult{}, fmt.Errorf("%w: %w", ErrJukebox, err)
		}
	}
}

// readOnce serves one READ from one version of the file: the one of the
// attributes it validates first.
func (fs *FS) readOnce(ctx context.Context, cred Cred, id NodeID, off uint64, count uint32) (ReadResult, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return ReadResult{}, err
	}
	a, err := fs.readAttr(ctx, cred, &n, off)
	if err != nil {
		return ReadResult{}, err
	}
	if a.Type != backend.TypeRegular {
		if a.Type == backend.TypeDirectory {
			return ReadResult{}, ErrIsDir
		}
		return ReadResult{}, fmt.Errorf("read of a %s: %w", a.Type, ErrInvalid)
	}
	if err := checkRead(cred, a); err != nil {
		return ReadResult{}, err
	}
	// Ask for no more than the file holds: a 1 MiB READ of a small file
	// then costs a small buffer, not a zeroed megabyte. Should the file
	// have grown since, the short read says eof=false and the client
	// reads on.
	want := min(count, maxReadBytes)
	if off >= a.SizeBytes {
		want = 0
	} else if rest := a.SizeBytes - off; rest < uint64(want) {
		want = uint32(rest)
	}
	buf, release := fs.readBuf(want)
	data, eof, held, err := fs.readData(ctx, cred, &n, a, off, buf)
	if err != nil {
		release()
		return ReadResult{}, err
	}
	if held != nil {
		// The data is a fetched chunk's buffer, not buf.
		release()
		release = held
	}
	return ReadResult{Data: data, EOF: eof, Attr: n.ex.attr(n.in.Ino, a), Release: release}, nil
}

// readAttr returns the attributes a READ of n at off validates: the
// cached or origin ones (getattr), except under ttl with a data cache,
// where a burst of READs shares one version (stream.go).
func (fs *FS) readAttr(ctx context.Context, cred Cred, n *node, off uint64) (backend.Attr, error) {
	c := n.ex.consistency
	if fs.data == nil || c.Mode != ConsistencyTTL {
		return fs.getattr(ctx, cred, n)
	}
	now := fs.now()
	if a, ok := fs.data.streams.continued(n.in.Ino, off, now, c.TTL); ok {
		fs.m.attrHits.Add(1)
		return a, nil
	}
	// A new stream: cached attributes only if they stay usable for at
	// least the next TTL/2, so that the burst it starts ends before they
	// are TTL old.
	e, ok := fs.fresh.attr(n.in.Ino)
	if !ok {
		e, ok = fs.loadAttr(n.ex, n.in.Ino) // persisted in meta (fresh.go)
	}
	if ok && !e.void && fs.usable(n.ex, e.asked, e.gen) && now.Sub(e.asked) < c.TTL/2 {
		fs.m.attrHits.Add(1)
		fs.data.streams.start(n.in.Ino, e.a, e.asked, now)
		return e.a, nil
	}
	a, err := fs.getattrOrigin(ctx, cred, n)
	if err != nil {
		return a, err
	}
	fs.data.streams.start(n.in.Ino, a, now, fs.now())
	return a, nil
}

// pooledReadMinBytes: READs at least this large take their buffer from
// the pool. Profiles of 1 MiB READs showed a fresh buffer per call (zeroing,
// page faults on memory the runtime had returned, GC) costing about half
// of the server's CPU; small READs are cheap to allocate.
const pooledReadMinBytes = 64 << 10

// readBuf returns a buffer of count bytes and the function that gives it
// back (a no-op for small buffers).
func (fs *FS) readBuf(count uint32) ([]byte, func()) {
	if count < pooledReadMinBytes {
		return make([]byte, count), func() {}
	}
	b := fs.readBufs.get()
	return b[:count], func() { fs.readBufs.put(b) }
}

// readBufKept bounds the idle READ buffers kept (of maxReadBytes each).
const readBufKept = 64

// bufList is a bounded free list of buffers of one size. Unlike a
// sync.Pool it survives garbage collections: with a pool, every GC cycle
// dropped the idle megabyte buffers and the next READs allocated (and
// zeroed, and page-faulted in) them again, a quarter of the bytes
// allocated while serving warm small files.
type bufList struct {
	size, keep int
	mu         sync.Mutex // guards free
	free       [][]byte
}

func newBufList(size, keep int) *bufList { return &bufList{size: size, keep: keep} }

// get returns a buffer of len size.
func (l *bufList) get() []byte {
	l.mu.Lock()
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		l.mu.Unlock()
		return b
	}
	l.mu.Unlock()
	return make([]byte, l.size)
}

// put gives back a buffer that get returned (any length of it).
func (l *bufList) put(b []byte) {
	if cap(b) != l.size {
		return // not one of ours
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.free) < l.keep {
		l.free = append(l.free, b[:l.size])
	}
}

// readData fills buf with file data of n at off (len(buf) was clipped by
// the caller to the size in a, the attributes validated for this READ), or
// returns a fetched chunk's bytes instead, with held to give them back.
func (fs *FS) readData(ctx context.Context, cred Cred, n *node, a backend.Attr, off uint64, buf []byte) (data []byte, eof bool, held func(), err error) {
	if fs.data != nil {
		data, held, err := fs.data.read(ctx, fs, cred, n, a, off, buf)
		if err != nil {
			return nil, false, nil, err
		}
		end := off + uint64(len(data))
		fs.data.readAhead(fs, cred, *n, a, off, end)
		return data, end >= a.SizeBytes, held, nil
	}
	var k int
	err = fs.call(ctx, cred, []*node{n}, func(hs []backend.Handle) error {
		var err error
		k, eof, err = n.ex.origin.Read(ctx, cred, hs[0], buf, off)
		return err
	})
	if err != nil {
		return nil, false, nil, err
	}
	return buf[:k], eof, nil, nil
}
