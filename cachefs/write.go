package cachefs

import (
	"context"
	"fmt"

	"github.com/nascache/nascache/backend"
)

// The write path. Today every WRITE and COMMIT goes through to the origin
// with the stability the client asked for; write-back (a later issue)
// plugs in at writeData and commitData.

// Write writes data to n at off with at least the requested stability.
func (fs *FS) Write(ctx context.Context, cred Cred, id NodeID, off uint64, data []byte, stable Stability) (WriteResult, error) {
	res, err := fs.write(ctx, cred, id, off, data, stable)
	if err != nil {
		return res, fmt.Errorf("write %s at %d+%d: %w", id, off, len(data), err)
	}
	return res, nil
}

func (fs *FS) write(ctx context.Context, cred Cred, id NodeID, off uint64, data []byte, stable Stability) (WriteResult, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return WriteResult{}, err
	}
	gen, asked := n.ex.gen.Load(), fs.now()
	pre, err := fs.getattr(ctx, cred, &n)
	if err != nil {
		return WriteResult{}, err
	}
	res := WriteResult{WCC: WCC{Before: preAttr(pre)}}
	if pre.Type != backend.TypeRegular {
		if pre.Type == backend.TypeDirectory {
			return res, ErrIsDir
		}
		return res, fmt.Errorf("write to a %s: %w", pre.Type, ErrInvalid)
	}
	if err := checkWrite(cred, pre); err != nil {
		return res, err
	}
	got, post, err := fs.writeData(ctx, cred, &n, off, data, stable)
	if fs.data != nil {
		// Even a failed write may have changed part of the file.
		fs.data.invalidate(ctx, n.in.Ino)
	}
	if err != nil {
		fs.fresh.dropAttr(n.in.Ino)
		return res, err
	}
	fs.noteAttr(n.ex, n.in.Ino, post, asked, gen)
	after := n.ex.attr(n.in.Ino, post)
	res.Count, res.Committed, res.WCC.After = uint32(len(data)), got, &after
	return res, nil
}

// writeData stores file data: the seam where write-back goes.
func (fs *FS) writeData(ctx context.Context, cred Cred, n *node, off uint64, data []byte, stable Stability) (Stability, backend.Attr, error) {
	var got Stability
	var a backend.Attr
	err := fs.call(ctx, cred, []*node{n}, func(hs []backend.Handle) error {
		var err error
		got, a, err = n.ex.origin.Write(ctx, cred, hs[0], data, off, stable)
		return err
	})
	return got, a, err
}

// Commit makes every earlier unstable write to n durable.
func (fs *FS) Commit(ctx context.Context, cred Cred, id NodeID) (WCC, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return WCC{}, fmt.Errorf("commit %s: %w", id, err)
	}
	pre, err := fs.getattr(ctx, cred, &n)
	if err != nil {
		return WCC{}, fmt.Errorf("commit %s: %w", id, err)
	}
	wcc := WCC{Before: preAttr(pre)}
	gen, asked := n.ex.gen.Load(), fs.now()
	post, err := fs.commitData(ctx, cred, &n)
	if err != nil {
		return wcc, fmt.Errorf("commit %s: %w", id, err)
	}
	fs.noteAttr(n.ex, n.in.Ino, post, asked, gen)
	after := n.ex.attr(n.in.Ino, post)
	wcc.After = &after
	return wcc, nil
}

// commitData makes written data durable: the seam where write-back goes.
func (fs *FS) commitData(ctx context.Context, cred Cred, n *node) (backend.Attr, error) {
	var a backend.Attr
	err := fs.call(ctx, cred, []*node{n}, func(hs []backend.Handle) error {
		var err error
		a, err = n.ex.origin.Commit(ctx, cred, hs[0])
		return err
	})
	return a, err
}
