package cachefs

import (
	"context"
	"fmt"
	"time"

	"github.com/nascache/nascache/backend"
)

// Root returns the root directory of an export.
func (fs *FS) Root(ctx context.Context, exportID uint16) (NodeID, Attr, error) {
	ex := fs.exports[exportID]
	if ex == nil {
		return NodeID{}, Attr{}, fmt.Errorf("root of export %d: not served: %w", exportID, ErrStale)
	}
	h, a, err := ex.origin.Root(ctx)
	if err != nil {
		return NodeID{}, Attr{}, fmt.Errorf("root of export %d: %w", exportID, err)
	}
	in, err := fs.db.Root(ex.id, h, a.FileID)
	if err != nil {
		return NodeID{}, Attr{}, fmt.Errorf("root of export %d: %w", exportID, metaErr(err))
	}
	fs.inodes.put(in)
	return NodeID{Export: ex.id, Ino: in.Ino, Gen: in.Gen}, ex.attr(in.Ino, a), nil
}

// GetAttr returns the attributes of n.
func (fs *FS) GetAttr(ctx context.Context, cred Cred, id NodeID) (Attr, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return Attr{}, fmt.Errorf("getattr %s: %w", id, err)
	}
	a, err := fs.getattr(ctx, cred, &n)
	if err != nil {
		return Attr{}, fmt.Errorf("getattr %s: %w", id, err)
	}
	return n.ex.attr(n.in.Ino, a), nil
}

// SetAttr changes attributes of n after checking that cred may.
func (fs *FS) SetAttr(ctx context.Context, cred Cred, id NodeID, sa SetAttr, guardCtime *time.Time) (WCC, error) {
	wcc, err := fs.setAttr(ctx, cred, id, sa, guardCtime)
	if err != nil {
		return wcc, fmt.Errorf("setattr %s: %w", id, err)
	}
	return wcc, nil
}

func (fs *FS) setAttr(ctx context.Context, cred Cred, id NodeID, sa SetAttr, guardCtime *time.Time) (WCC, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return WCC{}, err
	}
	pre, err := fs.getattrOrigin(ctx, cred, &n) // the guard compares the current ctime
	if err != nil {
		return WCC{}, err
	}
	wcc := WCC{Before: preAttr(pre)}
	if guardCtime != nil && !pre.Ctime.Equal(*guardCtime) {
		post := n.ex.attr(n.in.Ino, pre)
		wcc.After = &post
		return wcc, fmt.Errorf("ctime guard: %w", ErrNotSync)
	}
	sa, err = checkSetAttr(cred, pre, sa)
	if err != nil {
		post := n.ex.attr(n.in.Ino, pre)
		wcc.After = &post
		return wcc, err
	}
	var a backend.Attr
	gen, asked := n.ex.gen.Load(), fs.now()
	err = fs.call(ctx, cred, []*node{&n}, func(hs []backend.Handle) error {
		var err error
		a, err = n.ex.origin.SetAttr(ctx, cred, hs[0], sa, guardCtime)
		return err
	})
	if fs.data != nil && sa.SizeBytes != nil {
		// A truncate changes the data; drop the cached chunks at once.
		fs.data.invalidate(ctx, n.in.Ino)
	}
	if err != nil {
		fs.fresh.dropAttr(n.in.Ino)
		return wcc, err
	}
	fs.noteAttr(n.ex, n.in.Ino, a, asked, gen)
	post := n.ex.attr(n.in.Ino, a)
	wcc.After = &post
	return wcc, nil
}

// Access returns which of the requested Access* bits cred has on n.
func (fs *FS) Access(ctx context.Context, cred Cred, id NodeID, want uint32) (uint32, Attr, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return 0, Attr{}, fmt.Errorf("access %s: %w", id, err)
	}
	a, err := fs.getattr(ctx, cred, &n)
	if err != nil {
		return 0, Attr{}, fmt.Errorf("access %s: %w", id, err)
	}
	return accessBits(cred, a, want), n.ex.attr(n.in.Ino, a), nil
}

// ReadLink returns the target of the symlink n.
func (fs *FS) ReadLink(ctx context.Context, cred Cred, id NodeID) (string, Attr, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return "", Attr{}, fmt.Errorf("readlink %s: %w", id, err)
	}
	var target string
	var a backend.Attr
	err = fs.call(ctx, cred, []*node{&n}, func(hs []backend.Handle) error {
		var err error
		if a, err = n.ex.origin.GetAttr(ctx, cred, hs[0]); err != nil {
			return err
		}
		if a.Type != backend.TypeSymlink {
			return fmt.Errorf("%s is a %s: %w", id, a.Type, ErrInvalid)
		}
		target, err = n.ex.origin.ReadLink(ctx, cred, hs[0])
		return err
	})
	if err != nil {
		return "", Attr{}, fmt.Errorf("readlink %s: %w", id, err)
	}
	return target, n.ex.attr(n.in.Ino, a), nil
}

// FSStat returns the capacity figures of n's file system at the origin.
func (fs *FS) FSStat(ctx context.Context, cred Cred, id NodeID) (FSStat, Attr, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return FSStat{}, Attr{}, fmt.Errorf("fsstat %s: %w", id, err)
	}
	var st FSStat
	var a backend.Attr
	err = fs.call(ctx, cred, []*node{&n}, func(hs []backend.Handle) error {
		var err error
		if st, err = n.ex.origin.FSStat(ctx, cred, hs[0]); err != nil {
			return err
		}
		a, err = n.ex.origin.GetAttr(ctx, cred, hs[0])
		return err
	})
	if err != nil {
		return FSStat{}, Attr{}, fmt.Errorf("fsstat %s: %w", id, err)
	}
	return st, n.ex.attr(n.in.Ino, a), nil
}

// PathConf returns the POSIX limits of n's file system at the origin.
func (fs *FS) PathConf(ctx context.Context, cred Cred, id NodeID) (PathConf, Attr, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return PathConf{}, Attr{}, fmt.Errorf("pathconf %s: %w", id, err)
	}
	var pc PathConf
	var a backend.Attr
	err = fs.call(ctx, cred, []*node{&n}, func(hs []backend.Handle) error {
		var err error
		if pc, err = n.ex.origin.PathConf(ctx, cred, hs[0]); err != nil {
			return err
		}
		a, err = n.ex.origin.GetAttr(ctx, cred, hs[0])
		return err
	})
	if err != nil {
		return PathConf{}, Attr{}, fmt.Errorf("pathconf %s: %w", id, err)
	}
	return pc, n.ex.attr(n.in.Ino, a), nil
}
