package nfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// Properties implements backend.Origin.
func (o *Origin) Properties() backend.Properties {
	return backend.Properties{
		Name: "nfs", AtomicRename: true, HardLinks: true, Symlinks: true, SpecialFiles: true,
		MaxConcurrency: o.opts.MaxConcurrency,
	}
}

func authOf(c backend.Cred) *oncrpc.AuthSys {
	return &oncrpc.AuthSys{UID: c.UID, GID: c.GID, GIDs: c.GIDs}
}

// call makes one NFSv3 call on the mounted session (see callOn).
func (o *Origin) call(ctx context.Context, op string, proc uint32, cred backend.Cred, idempotent bool,
	args func(*oncrpc.Encoder), payload []byte, reply func(*oncrpc.Decoder) error) error {
	s, err := o.session(op)
	if err != nil {
		return err
	}
	if err := o.callOn(ctx, s, op, proc, cred, idempotent, args, payload, reply); err != nil {
		o.observe(op, err)
		return err
	}
	return nil
}

// callOn makes one NFSv3 call on s. It takes at most Options.CallTimeout
// in all, so that a stalled server yields backend.ErrUnavailable (and the
// NFS client NFS3ERR_JUKEBOX) well within a kernel client's patience.
// NFS3ERR_JUKEBOX is retried with backoff for up to Options.RetryFor, and
// so is a call that could not be sent for want of a connection, and a
// lost connection when the procedure is idempotent (re-running it cannot
// change the outcome). reply may run several times; it must reset what
// it fills.
func (o *Origin) callOn(ctx context.Context, s *session, op string, proc uint32, cred backend.Cred, idempotent bool,
	args func(*oncrpc.Encoder), payload []byte, reply func(*oncrpc.Decoder) error) error {
	// The call's deadline, not a context.WithTimeout: oncrpc enforces
	// it with one timer per connection instead of one per call.
	callEnd := time.Now().Add(o.opts.CallTimeout)
	req := &oncrpc.Request{
		Prog: nfsv3.NFS_PROGRAM_PROGRAM_NUMBER, Vers: 3, Proc: proc, Auth: authOf(cred),
		Args: args, Payload: payload, Reply: reply, Deadline: callEnd,
	}
	var deadline time.Time
	delay := o.opts.RetryBackoffMin
	for {
		err := s.rpc.Call(ctx, req)
		if err == nil {
			return nil
		}
		var se *StatusError
		jukebox := errors.As(err, &se) && se.Status == nfsv3.NFS3ERR_JUKEBOX
		lost := idempotent && errors.Is(err, oncrpc.ErrConnLost)
		notSent := errors.Is(err, oncrpc.ErrNoConnection) && ctx.Err() == nil && time.Now().Before(callEnd)
		if !jukebox && !lost && !notSent {
			return wrap(op, err)
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(o.opts.RetryFor)
			if callEnd.Before(deadline) {
				deadline = callEnd
			}
		}
		wait := delay/2 + rand.N(delay/2+1)
		if now.Add(wait).After(deadline) {
			return wrap(op, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return wrap(op, errors.Join(err, ctx.Err()))
		case <-t.C:
		}
		delay = min(delay*2, o.opts.RetryBackoffMax)
	}
}

// Root implements backend.Origin.
func (o *Origin) Root(ctx context.Context) (backend.Handle, backend.Attr, error) {
	sess, err := o.session("root")
	if err != nil {
		return nil, backend.Attr{}, err
	}
	a, err := o.GetAttr(ctx, backend.Cred{UID: sess.target.UID, GID: sess.target.GID}, sess.root)
	if err != nil {
		return nil, backend.Attr{}, err
	}
	return append(backend.Handle(nil), sess.root...), a, nil
}

func checkHandle(op string, h backend.Handle) error {
	if len(h) == 0 || len(h) > nfsv3.NFS3_FHSIZE {
		return fmt.Errorf("nfs %s: %w: %d-byte handle", op, backend.ErrBadHandle, len(h))
	}
	return nil
}

// GetAttr implements backend.Origin.
func (o *Origin) GetAttr(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.Attr, error) {
	if err := checkHandle("getattr", h); err != nil {
		return backend.Attr{}, err
	}
	var a backend.Attr
	err := o.call(ctx, "getattr", procGetattr, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			a = decodeFattr(d)
			return nil
		})
	return a, err
}

// attrOr returns a when ok, else asks the server.
func (o *Origin) attrOr(ctx context.Context, cred backend.Cred, h backend.Handle, a backend.Attr, ok bool) (backend.Attr, error) {
	if ok {
		return a, nil
	}
	return o.GetAttr(ctx, cred, h)
}

// SetAttr implements backend.Origin.
func (o *Origin) SetAttr(ctx context.Context, cred backend.Cred, h backend.Handle, sa backend.SetAttr, guardCtime *time.Time) (backend.Attr, error) {
	if err := checkHandle("setattr", h); err != nil {
		return backend.Attr{}, err
	}
	var a backend.Attr
	var ok bool
	// With a guard a retry after a lost reply could see its own ctime
	// change and fail NOT_SYNC; without one SETATTR is idempotent.
	err := o.call(ctx, "setattr", procSetattr, cred, guardCtime == nil,
		func(e *oncrpc.Encoder) {
			encodeFH(e, h)
			encodeSattr(e, sa)
			e.Bool(guardCtime != nil)
			if guardCtime != nil {
				encodeTime(e, *guardCtime)
			}
		}, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			a, ok = decodeWcc(d)
			return nil
		})
	if err != nil {
		return backend.Attr{}, err
	}
	return o.attrOr(ctx, cred, h, a, ok)
}

// Lookup implements backend.Origin.
func (o *Origin) Lookup(ctx context.Context, cred backend.Cred, dir backend.Handle, name string) (backend.Handle, backend.Attr, error) {
	if err := checkHandle("lookup", dir); err != nil {
		return nil, backend.Attr{}, err
	}
	if sess := o.sess.Load(); name == ".." && sess != nil && bytes.Equal(dir, sess.root) {
		// The root's parent is the root: an export mounted below the
		// server's root must not lead above itself.
		a, err := o.GetAttr(ctx, cred, dir)
		return append(backend.Handle(nil), sess.root...), a, err
	}
	var h backend.Handle
	var a backend.Attr
	var ok bool
	err := o.call(ctx, "lookup "+name, procLookup, cred, true,
		func(e *oncrpc.Encoder) { encodeDirop(e, dir, name) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			h = decodeFH(d)
			a, ok = decodePostOpAttr(d)
			decodePostOpAttr(d)
			return nil
		})
	if err != nil {
		return nil, backend.Attr{}, err
	}
	a, err = o.attrOr(ctx, cred, h, a, ok)
	return h, a, err
}

// Access asks the server which of the ACCESS3_* bits in mask cred has on h.
func (o *Origin) Access(ctx context.Context, cred backend.Cred, h backend.Handle, mask uint32) (uint32, error) {
	if err := checkHandle("access", h); err != nil {
		return 0, err
	}
	var granted uint32
	err := o.call(ctx, "access", procAccess, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h); e.Uint32(mask) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			decodePostOpAttr(d)
			granted = d.Uint32()
			return nil
		})
	return granted, err
}

// ReadLink implements backend.Origin.
func (o *Origin) ReadLink(ctx context.Context, cred backend.Cred, h backend.Handle) (string, error) {
	if err := checkHandle("readlink", h); err != nil {
		return "", err
	}
	var target string
	err := o.call(ctx, "readlink", procReadlink, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			decodePostOpAttr(d)
			target = d.String(maxPathBytes)
			return nil
		})
	return target, err
}

// Read implements backend.Origin. A read larger than the server's rtmax is
// split into READs that are all in flight at once; each decodes its data
// straight into its part of p.
func (o *Origin) Read(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, error) {
	n, eof, _, _, err := o.ReadAttr(ctx, cred, h, p, off)
	return n, eof, err
}

// ReadAttr is Read that also returns the file's attributes as the server
// reported them after the read (READ's post-op attributes), so a caller
// can check which version of the file it read without a GETATTR. ok is
// false when the server left them out, or when a read that took several
// READs saw the file at more than one version.
func (o *Origin) ReadAttr(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, backend.Attr, bool, error) {
	if err := checkHandle("read", h); err != nil {
		return 0, false, backend.Attr{}, false, err
	}
	total := 0
	var attr backend.Attr
	hasAttr, first := false, true
	for total < len(p) {
		n, eof, a, ok, err := o.readSpan(ctx, cred, h, p[total:], off+uint64(total))
		total += n
		if err != nil {
			return total, false, backend.Attr{}, false, err
		}
		switch {
		case first:
			attr, hasAttr = a, ok
		case !ok || !sameVersion(attr, a):
			hasAttr = false
		}
		first = false
		if eof {
			return total, true, attr, hasAttr, nil
		}
		if n == 0 {
			break // a server that returns nothing without EOF: do not spin
		}
	}
	return total, false, attr, hasAttr, nil
}

// sameVersion reports whether two sets of attributes of one file describe
// the same content (what a data cache keys its chunks on).
func sameVersion(a, b backend.Attr) bool {
	return a.SizeBytes == b.SizeBytes && a.Mtime.Equal(b.Mtime) && a.Ctime.Equal(b.Ctime) && a.FileID == b.FileID
}

type ioPart struct {
	n       int
	eof     bool
	attr    backend.Attr
	hasAttr bool
	err     error
}

// readSpan reads p at off in rtmax pieces concurrently and returns the
// length of the complete prefix: it stops at the first short piece. The
// attributes are those of the pieces of the prefix, if they all had the
// same version.
func (o *Origin) readSpan(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, backend.Attr, bool, error) {
	sess, err := o.session("read")
	if err != nil {
		return 0, false, backend.Attr{}, false, err
	}
	size := int(sess.rtmax)
	parts := make([]ioPart, max(1, (len(p)+size-1)/size))
	var wg sync.WaitGroup
	for i := range parts {
		lo := i * size
		hi := min(lo+size, len(p))
		do := func() {
			pt := &parts[i]
			pt.n, pt.eof, pt.attr, pt.hasAttr, pt.err = o.read1(ctx, cred, h, p[lo:hi], off+uint64(lo))
		}
		if len(parts) == 1 {
			do()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); do() }()
	}
	wg.Wait()
	total := 0
	attr, hasAttr := parts[0].attr, true
	for i, pt := range parts {
		total += pt.n
		if !pt.hasAttr || !sameVersion(attr, pt.attr) {
			hasAttr = false
		}
		want := min(size, len(p)-i*size)
		if pt.err != nil || pt.eof || pt.n < want {
			return total, pt.eof && pt.err == nil, attr, hasAttr && pt.err == nil, pt.err
		}
	}
	return total, false, attr, hasAttr, nil
}

func (o *Origin) read1(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, backend.Attr, bool, error) {
	var n int
	var eof, hasAttr bool
	var attr backend.Attr
	err := o.call(ctx, "read", procRead, cred, true,
		func(e *oncrpc.Encoder) {
			encodeFH(e, h)
			e.Uint64(off)
			e.Uint32(uint32(len(p)))
		}, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			attr, hasAttr = decodePostOpAttr(d)
			count := d.Uint32()
			eof = d.Bool()
			n = d.OpaqueInto(p)
			if d.Err() == nil && int(count) != n {
				d.Fail(fmt.Errorf("%w: READ count %d but %d data bytes", oncrpc.ErrGarbageReply, count, n))
			}
			return nil
		})
	if err != nil {
		return 0, false, backend.Attr{}, false, fmt.Errorf("%w (offset %d)", err, off)
	}
	return n, eof, attr, hasAttr, nil
}

type writeResult struct {
	count     uint32
	committed backend.Stability
	verf      [8]byte
	attr      backend.Attr
	hasAttr   bool
}

func (o *Origin) write1(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64, stable backend.Stability) (writeResult, error) {
	var r writeResult
	err := o.call(ctx, "write", procWrite, cred, true,
		func(e *oncrpc.Encoder) {
			encodeFH(e, h)
			e.Uint64(off)
			e.Uint32(uint32(len(p)))
			e.Int32(int32(stable)) // backend.Stability follows stable_how
			e.Uint32(uint32(len(p)))
		}, p,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			r.attr, r.hasAttr = decodeWcc(d)
			r.count = d.Uint32()
			c := d.Uint32()
			d.Fixed(r.verf[:])
			if d.Err() == nil && (c > uint32(backend.FileSync) || r.count > uint32(len(p))) {
				d.Fail(fmt.Errorf("%w: WRITE count %d of %d, committed %d", oncrpc.ErrGarbageReply, r.count, len(p), c))
			}
			r.committed = backend.Stability(c)
			return nil
		})
	if err != nil {
		return r, fmt.Errorf("%w (offset %d)", err, off)
	}
	return r, nil
}

// writeAll writes p at off with stable, in wtmax pieces sent concurrently,
// re-sending whatever a server wrote short. It returns the weakest
// stability any piece reached, the verifier of the last piece and the
// attributes after the last piece to finish.
func (o *Origin) writeAll(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64, stable backend.Stability) (writeResult, error) {
	sess, err := o.session("write")
	if err != nil {
		return writeResult{}, err
	}
	size := int(sess.wtmax)
	n := max(1, (len(p)+size-1)/size)
	results := make([]writeResult, n)
	errs := make([]error, n)
	piece := func(i int) {
		lo := i * size
		hi := min(lo+size, len(p))
		res := writeResult{committed: backend.FileSync}
		for lo < hi || (len(p) == 0 && lo == 0) {
			r, err := o.write1(ctx, cred, h, p[lo:hi], off+uint64(lo), stable)
			if err != nil {
				errs[i] = err
				return
			}
			res.committed = min(res.committed, r.committed)
			res.verf, res.attr, res.hasAttr, res.count = r.verf, r.attr, r.hasAttr, res.count+r.count
			if r.count == 0 {
				if len(p) == 0 {
					break
				}
				errs[i] = fmt.Errorf("nfs write (offset %d): %w: server wrote nothing", off+uint64(lo), backend.ErrIO)
				return
			}
			lo += int(r.count)
		}
		results[i] = res
	}
	if n == 1 {
		piece(0)
	} else {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); piece(i) }()
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return writeResult{}, err
	}
	out := results[n-1]
	for _, r := range results {
		out.committed = min(out.committed, r.committed)
		if r.verf != out.verf {
			// Pieces saw different verifiers: the server restarted
			// mid-write. Report UNSTABLE under the last verifier so
			// that the data is re-sent before COMMIT trusts it.
			out.committed = backend.Unstable
		}
	}
	return out, nil
}

// Write implements backend.Origin. UNSTABLE data is kept (up to
// Options.UnstableLimitBytes in all) until Commit, which re-sends it if
// the server's write verifier changed (the server restarted and may have
// lost it); past the limit writes are sent FILE_SYNC.
func (o *Origin) Write(ctx context.Context, cred backend.Cred, h backend.Handle, p []byte, off uint64, stable backend.Stability) (backend.Stability, backend.Attr, error) {
	if err := checkHandle("write", h); err != nil {
		return 0, backend.Attr{}, err
	}
	if stable != backend.Unstable {
		r, err := o.writeAll(ctx, cred, h, p, off, stable)
		if err != nil {
			return 0, backend.Attr{}, err
		}
		a, err := o.attrOr(ctx, cred, h, r.attr, r.hasAttr)
		return max(r.committed, stable), a, err
	}
	f := o.unstable.file(h)
	f.commitMu.RLock()
	defer f.commitMu.RUnlock()
	if !o.unstable.reserve(int64(len(p))) {
		r, err := o.writeAll(ctx, cred, h, p, off, backend.FileSync)
		if err != nil {
			return 0, backend.Attr{}, err
		}
		a, err := o.attrOr(ctx, cred, h, r.attr, r.hasAttr)
		return backend.FileSync, a, err
	}
	r, err := o.writeAll(ctx, cred, h, p, off, backend.Unstable)
	if err != nil || r.committed != backend.Unstable {
		o.unstable.release(int64(len(p)))
	} else {
		f.add(unstableRange{off: off, data: append([]byte(nil), p...), verf: r.verf})
	}
	if err != nil {
		return 0, backend.Attr{}, err
	}
	a, err := o.attrOr(ctx, cred, h, r.attr, r.hasAttr)
	return r.committed, a, err
}

// Commit implements backend.Origin. It sends COMMIT and compares the
// verifier with the one each kept UNSTABLE write got; on any difference it
// re-sends all kept data of h FILE_SYNC, in the order it was written.
func (o *Origin) Commit(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.Attr, error) {
	if err := checkHandle("commit", h); err != nil {
		return backend.Attr{}, err
	}
	f := o.unstable.lookup(h)
	if f != nil {
		// Exclusive: no write to h runs while its data may be re-sent,
		// so re-sending cannot overwrite newer data.
		f.commitMu.Lock()
		defer f.commitMu.Unlock()
	}
	var verf [8]byte
	var a backend.Attr
	var ok bool
	err := o.call(ctx, "commit", procCommit, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h); e.Uint64(0); e.Uint32(0) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			a, ok = decodeWcc(d)
			d.Fixed(verf[:])
			return nil
		})
	if err != nil {
		return backend.Attr{}, err
	}
	if f != nil {
		ranges := f.take()
		resend := false
		for _, r := range ranges {
			if r.verf != verf {
				resend = true
				break
			}
		}
		if resend {
			o.opts.Logger.Warn().Hex("handle", h).Int("ranges", len(ranges)).Msg("nfs origin: write verifier changed; re-sending unstable data")
			for i, r := range ranges {
				wr, err := o.writeAll(ctx, cred, h, r.data, r.off, backend.FileSync)
				if err == nil && wr.committed != backend.FileSync {
					err = fmt.Errorf("nfs commit: %w: re-sent FILE_SYNC write came back %d", backend.ErrIO, wr.committed)
				}
				if err != nil {
					f.restore(ranges[i:])
					o.unstable.release(sizeOf(ranges[:i]))
					return backend.Attr{}, err
				}
				a, ok = wr.attr, wr.hasAttr
			}
		}
		o.unstable.release(sizeOf(ranges))
		o.unstable.forgetIfEmpty(h, f)
	}
	return o.attrOr(ctx, cred, h, a, ok)
}

func (o *Origin) create(ctx context.Context, op string, proc uint32, cred backend.Cred, dir backend.Handle, name string,
	idempotent bool, args func(e *oncrpc.Encoder)) (backend.Handle, backend.Attr, error) {
	if err := checkHandle(op, dir); err != nil {
		return nil, backend.Attr{}, err
	}
	var r newObjResult
	err := o.call(ctx, op+" "+name, proc, cred, idempotent, func(e *oncrpc.Encoder) {
		encodeDirop(e, dir, name)
		args(e)
	}, nil, func(d *oncrpc.Decoder) error { r = newObjResult{}; return r.decode(d) })
	if err != nil {
		return nil, backend.Attr{}, err
	}
	if !r.hasH {
		return o.Lookup(ctx, cred, dir, name)
	}
	a, err := o.attrOr(ctx, cred, r.h, r.attr, r.hasAttr)
	return r.h, a, err
}

// Create implements backend.Origin (UNCHECKED, GUARDED and EXCLUSIVE).
func (o *Origin) Create(ctx context.Context, cred backend.Cred, dir backend.Handle, name string, args backend.CreateArgs) (backend.Handle, backend.Attr, error) {
	h, a, err := o.create(ctx, "create", procCreate, cred, dir, name, args.Mode != backend.CreateGuarded, func(e *oncrpc.Encoder) {
		switch args.Mode {
		case backend.CreateGuarded:
			e.Int32(int32(nfsv3.GUARDED))
			encodeSattr(e, args.Attr)
		case backend.CreateExclusive:
			e.Int32(int32(nfsv3.EXCLUSIVE))
			e.Fixed(args.Verifier[:])
		default:
			e.Int32(int32(nfsv3.UNCHECKED))
			encodeSattr(e, args.Attr)
		}
	})
	if err != nil || args.Mode != backend.CreateExclusive {
		return h, a, err
	}
	// RFC 1813: after an EXCLUSIVE create the server may have used the
	// time fields for the verifier; the client sets the attributes.
	sa := args.Attr
	sa.SizeBytes = nil
	if sa.Mode == nil && sa.UID == nil && sa.GID == nil && sa.Atime == backend.TimeDontChange && sa.Mtime == backend.TimeDontChange {
		return h, a, nil
	}
	if sa.Atime == backend.TimeDontChange {
		sa.Atime = backend.TimeServer
	}
	if sa.Mtime == backend.TimeDontChange {
		sa.Mtime = backend.TimeServer
	}
	a, err = o.SetAttr(ctx, cred, h, sa, nil)
	return h, a, err
}

// Mkdir implements backend.Origin.
func (o *Origin) Mkdir(ctx context.Context, cred backend.Cred, dir backend.Handle, name string, sa backend.SetAttr) (backend.Handle, backend.Attr, error) {
	return o.create(ctx, "mkdir", procMkdir, cred, dir, name, false, func(e *oncrpc.Encoder) { encodeSattr(e, sa) })
}

// Symlink implements backend.Origin.
func (o *Origin) Symlink(ctx context.Context, cred backend.Cred, dir backend.Handle, name, target string, sa backend.SetAttr) (backend.Handle, backend.Attr, error) {
	return o.create(ctx, "symlink", procSymlink, cred, dir, name, false, func(e *oncrpc.Encoder) {
		encodeSattr(e, sa)
		e.String(target)
	})
}

// Mknod implements backend.Origin.
func (o *Origin) Mknod(ctx context.Context, cred backend.Cred, dir backend.Handle, name string, t backend.FileType, sa backend.SetAttr, rdevMajor, rdevMinor uint32) (backend.Handle, backend.Attr, error) {
	switch t {
	case backend.TypeBlock, backend.TypeChar, backend.TypeSocket, backend.TypeFIFO:
	default:
		return nil, backend.Attr{}, fmt.Errorf("nfs mknod %s: %w: type %v", name, backend.ErrInvalid, t)
	}
	return o.create(ctx, "mknod", procMknod, cred, dir, name, false, func(e *oncrpc.Encoder) {
		e.Uint32(uint32(t))
		encodeSattr(e, sa)
		if t == backend.TypeBlock || t == backend.TypeChar {
			e.Uint32(rdevMajor)
			e.Uint32(rdevMinor)
		}
	})
}

// Link implements backend.Origin.
func (o *Origin) Link(ctx context.Context, cred backend.Cred, h backend.Handle, dir backend.Handle, name string) (backend.Attr, error) {
	if err := checkHandle("link", h); err != nil {
		return backend.Attr{}, err
	}
	if err := checkHandle("link", dir); err != nil {
		return backend.Attr{}, err
	}
	var a backend.Attr
	var ok bool
	err := o.call(ctx, "link "+name, procLink, cred, false,
		func(e *oncrpc.Encoder) { encodeFH(e, h); encodeDirop(e, dir, name) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			a, ok = decodePostOpAttr(d)
			decodeWcc(d)
			return nil
		})
	if err != nil {
		return backend.Attr{}, err
	}
	return o.attrOr(ctx, cred, h, a, ok)
}

func (o *Origin) dirop(ctx context.Context, op string, proc uint32, cred backend.Cred, dir backend.Handle, name string) error {
	if err := checkHandle(op, dir); err != nil {
		return err
	}
	return o.call(ctx, op+" "+name, proc, cred, false,
		func(e *oncrpc.Encoder) { encodeDirop(e, dir, name) }, nil,
		decodeStatus) // the wcc_data that follows is skipped
}

// Remove implements backend.Origin.
func (o *Origin) Remove(ctx context.Context, cred backend.Cred, dir backend.Handle, name string) error {
	return o.dirop(ctx, "remove", procRemove, cred, dir, name)
}

// Rmdir implements backend.Origin.
func (o *Origin) Rmdir(ctx context.Context, cred backend.Cred, dir backend.Handle, name string) error {
	return o.dirop(ctx, "rmdir", procRmdir, cred, dir, name)
}

// Rename implements backend.Origin.
func (o *Origin) Rename(ctx context.Context, cred backend.Cred, fromDir backend.Handle, fromName string, toDir backend.Handle, toName string) error {
	if err := checkHandle("rename", fromDir); err != nil {
		return err
	}
	if err := checkHandle("rename", toDir); err != nil {
		return err
	}
	return o.call(ctx, "rename "+fromName+" to "+toName, procRename, cred, false,
		func(e *oncrpc.Encoder) { encodeDirop(e, fromDir, fromName); encodeDirop(e, toDir, toName) }, nil,
		decodeStatus)
}

// ReadDir implements backend.Origin with READDIRPLUS, one page at a time:
// each page is decoded on the connection's reader and handed to fn on the
// calling goroutine before the next page is asked for.
func (o *Origin) ReadDir(ctx context.Context, cred backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	if err := checkHandle("readdir", dir); err != nil {
		return err
	}
	var cookie uint64
	var verf [8]byte
	var page []backend.DirEntry
	var missing []int // entries the server sent without handle or attributes
	for {
		var eof bool
		seen := 0 // entries in the page, "." and ".." included
		// The reply may be decoded more than once (a retry after a lost
		// connection): the position moves only once a page is whole.
		nextCookie, nextVerf := cookie, verf
		err := o.call(ctx, "readdirplus", procReaddirplus, cred, true,
			func(e *oncrpc.Encoder) {
				encodeFH(e, dir)
				e.Uint64(cookie)
				e.Fixed(verf[:])
				e.Uint32(o.opts.ReaddirMaxBytes) // dircount
				e.Uint32(o.opts.ReaddirMaxBytes) // maxcount
			}, nil,
			func(d *oncrpc.Decoder) error {
				page, missing, seen = page[:0], missing[:0], 0
				nextCookie, nextVerf = cookie, verf
				if err := decodeStatus(d); err != nil {
					return err
				}
				decodePostOpAttr(d)
				d.Fixed(nextVerf[:])
				for d.Err() == nil && d.Bool() {
					d.Uint64() // fileid; the attributes carry it too
					name := d.String(maxNameBytes)
					nextCookie = d.Uint64()
					a, hasA := decodePostOpAttr(d)
					h, hasH := decodePostOpFH(d)
					seen++
					if name == "." || name == ".." {
						continue
					}
					if !hasA || !hasH {
						missing = append(missing, len(page))
					}
					page = append(page, backend.DirEntry{Name: name, Handle: h, Attr: a})
				}
				eof = d.Bool()
				return nil
			})
		if err != nil {
			return err
		}
		cookie, verf = nextCookie, nextVerf
		for _, i := range missing {
			h, a, err := o.Lookup(ctx, cred, dir, page[i].Name)
			if err != nil {
				return fmt.Errorf("nfs readdir: entry %q: %w", page[i].Name, err)
			}
			page[i].Handle, page[i].Attr = h, a
		}
		for _, de := range page {
			if !fn(de) {
				return nil
			}
		}
		if eof {
			return nil
		}
		if seen == 0 {
			return fmt.Errorf("nfs readdir: %w: page without entries or eof", backend.ErrIO)
		}
	}
}

// FSStat implements backend.Origin.
func (o *Origin) FSStat(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.FSStat, error) {
	if err := checkHandle("fsstat", h); err != nil {
		return backend.FSStat{}, err
	}
	var s backend.FSStat
	err := o.call(ctx, "fsstat", procFsstat, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			decodePostOpAttr(d)
			s = backend.FSStat{TotalBytes: d.Uint64(), FreeBytes: d.Uint64(), AvailBytes: d.Uint64(),
				TotalFiles: d.Uint64(), FreeFiles: d.Uint64(), AvailFiles: d.Uint64()}
			d.Uint32() // invarsec
			return nil
		})
	return s, err
}

// FSInfo are the server's static file system figures (FSINFO).
type FSInfo struct {
	RtMax, RtPref, RtMult uint32
	WtMax, WtPref, WtMult uint32
	DtPref                uint32
	MaxFileSize           uint64
	TimeDelta             time.Duration
	Properties            uint32 // FSF3_* bits
}

// FSInfo asks the server for its static figures of the file system of h.
func (o *Origin) FSInfo(ctx context.Context, cred backend.Cred, h backend.Handle) (FSInfo, error) {
	s, err := o.session("fsinfo")
	if err != nil {
		return FSInfo{}, err
	}
	fi, err := o.fsinfo(ctx, s, cred, h)
	if err != nil {
		o.observe("fsinfo", err)
	}
	return fi, err
}

func (o *Origin) fsinfo(ctx context.Context, s *session, cred backend.Cred, h backend.Handle) (FSInfo, error) {
	if err := checkHandle("fsinfo", h); err != nil {
		return FSInfo{}, err
	}
	var fi FSInfo
	err := o.callOn(ctx, s, "fsinfo", procFsinfo, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			decodePostOpAttr(d)
			fi = FSInfo{RtMax: d.Uint32(), RtPref: d.Uint32(), RtMult: d.Uint32(),
				WtMax: d.Uint32(), WtPref: d.Uint32(), WtMult: d.Uint32(), DtPref: d.Uint32(),
				MaxFileSize: d.Uint64()}
			s, ns := d.Uint32(), d.Uint32()
			fi.TimeDelta = time.Duration(s)*time.Second + time.Duration(ns)
			fi.Properties = d.Uint32()
			return nil
		})
	return fi, err
}

// PathConf implements backend.Origin.
func (o *Origin) PathConf(ctx context.Context, cred backend.Cred, h backend.Handle) (backend.PathConf, error) {
	if err := checkHandle("pathconf", h); err != nil {
		return backend.PathConf{}, err
	}
	var pc backend.PathConf
	err := o.call(ctx, "pathconf", procPathconf, cred, true,
		func(e *oncrpc.Encoder) { encodeFH(e, h) }, nil,
		func(d *oncrpc.Decoder) error {
			if err := decodeStatus(d); err != nil {
				return err
			}
			decodePostOpAttr(d)
			pc = backend.PathConf{LinkMax: d.Uint32(), NameMax: d.Uint32(), NoTrunc: d.Bool(),
				ChownRestricted: d.Bool(), CaseInsensitive: d.Bool(), CasePreserving: d.Bool()}
			return nil
		})
	return pc, err
}
