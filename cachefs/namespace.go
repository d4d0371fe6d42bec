package cachefs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nascache/nascache/backend"
)

// Lookup resolves name in dir. "." is dir itself; ".." is its parent as
// recorded in meta, and the root itself for an export root, so no lookup
// leaves the export. It returns the object's and the directory's
// attributes.
func (fs *FS) Lookup(ctx context.Context, cred Cred, dirID NodeID, name string) (NodeID, Attr, Attr, error) {
	id, a, da, err := fs.lookup(ctx, cred, dirID, name)
	if err != nil {
		return NodeID{}, Attr{}, da, fmt.Errorf("lookup %q in %s: %w", name, dirID, err)
	}
	return id, a, da, nil
}

func (fs *FS) lookup(ctx context.Context, cred Cred, dirID NodeID, name string) (NodeID, Attr, Attr, error) {
	dir, err := fs.resolve(dirID)
	if err != nil {
		return NodeID{}, Attr{}, Attr{}, err
	}
	pre, err := fs.getattr(ctx, cred, &dir)
	if err != nil {
		return NodeID{}, Attr{}, Attr{}, err
	}
	da := dir.ex.attr(dir.in.Ino, pre)
	if err := checkName(name); err != nil {
		return NodeID{}, Attr{}, da, err
	}
	if err := checkLookup(cred, pre); err != nil {
		return NodeID{}, Attr{}, da, err
	}
	switch {
	case name == "." || (name == ".." && dir.in.Parent == 0):
		return dir.id(), da, da, nil
	case name == "..":
		p, err := fs.inode(dir.in.Parent)
		if err != nil {
			return NodeID{}, Attr{}, da, err
		}
		pn := node{ex: dir.ex, in: p}
		pa, err := fs.getattr(ctx, cred, &pn)
		if err != nil {
			return NodeID{}, Attr{}, da, err
		}
		return pn.id(), pn.ex.attr(pn.in.Ino, pa), da, nil
	}
	if id, a, ok, err := fs.cachedLookup(ctx, cred, &dir, name); ok {
		return id, a, da, err
	}
	gen, asked := dir.ex.gen.Load(), fs.now()
	var h backend.Handle
	var a backend.Attr
	err = fs.call(ctx, cred, []*node{&dir}, func(hs []backend.Handle) error {
		var err error
		h, a, err = dir.ex.origin.Lookup(ctx, cred, hs[0], name)
		return err
	})
	if errors.Is(err, backend.ErrNotExist) {
		fs.noteLookup(dir.ex, dir.in.Ino, name, 0, asked, gen)
	}
	if err != nil {
		return NodeID{}, Attr{}, da, err
	}
	in, err := fs.mapEntry(&dir, name, h, a)
	if err != nil {
		return NodeID{}, Attr{}, da, err
	}
	fs.noteLookup(dir.ex, dir.in.Ino, name, in.Ino, asked, gen)
	fs.noteOriginAttr(dir.ex, in.Ino, a, asked, gen)
	return NodeID{Export: dir.ex.id, Ino: in.Ino, Gen: in.Gen}, dir.ex.attr(in.Ino, a), da, nil
}

// cachedLookup answers a LOOKUP of name in dir from the cache (memory,
// then meta) when the export's consistency allows; ok is false when the
// origin must be asked.
func (fs *FS) cachedLookup(ctx context.Context, cred Cred, dir *node, name string) (NodeID, Attr, bool, error) {
	if !dir.ex.cached() {
		return NodeID{}, Attr{}, false, nil
	}
	e, ok := fs.freshLookup(dir.ex, dir.in.Ino, name)
	if !ok {
		return NodeID{}, Attr{}, false, nil
	}
	if e.ino == 0 {
		fs.m.attrHits.Add(1)
		return NodeID{}, Attr{}, true, fmt.Errorf("%q (cached): %w", name, ErrNotExist)
	}
	in, err := fs.inode(e.ino)
	if err != nil || in.Export != dir.ex.id {
		return NodeID{}, Attr{}, false, nil
	}
	n := node{ex: dir.ex, in: in}
	a, err := fs.getattr(ctx, cred, &n)
	if err != nil {
		return NodeID{}, Attr{}, false, nil
	}
	return n.id(), n.ex.attr(in.Ino, a), true, nil
}

// checkNewOwner refuses explicit owners in the attributes of a new object
// that cred could not set with SETATTR.
func checkNewOwner(cred Cred, sa SetAttr) error {
	if cred.UID == 0 {
		return nil
	}
	if sa.UID != nil && *sa.UID != cred.UID {
		return fmt.Errorf("new object owned by %d, caller %d: %w", *sa.UID, cred.UID, ErrPerm)
	}
	if sa.GID != nil && !inGroup(cred, *sa.GID) {
		return fmt.Errorf("new object in group %d, caller not a member: %w", *sa.GID, ErrPerm)
	}
	return nil
}

// makeFunc makes an object named name in the directory with handle dir.
type makeFunc func(dir backend.Handle) (backend.Handle, backend.Attr, error)

// make runs the steps every CREATE, MKDIR, SYMLINK and MKNOD share:
// validate, check permission on dir, make the object at the origin, map
// it to an inode, and collect the directory's wcc data.
func (fs *FS) make(ctx context.Context, cred Cred, dirID NodeID, name string, sa SetAttr, mk makeFunc) (NodeID, Attr, WCC, error) {
	dir, err := fs.resolve(dirID)
	if err != nil {
		return NodeID{}, Attr{}, WCC{}, err
	}
	pre, err := fs.getattr(ctx, cred, &dir)
	if err != nil {
		return NodeID{}, Attr{}, WCC{}, err
	}
	wcc := WCC{Before: preAttr(pre)}
	if err := checkNewName(name); err != nil {
		return NodeID{}, Attr{}, wcc, err
	}
	if err := checkDirWrite(cred, pre); err != nil {
		return NodeID{}, Attr{}, wcc, err
	}
	if err := checkNewOwner(cred, sa); err != nil {
		return NodeID{}, Attr{}, wcc, err
	}
	var h backend.Handle
	var a backend.Attr
	end := dir.ex.beginChange()
	err = fs.call(ctx, cred, []*node{&dir}, func(hs []backend.Handle) error {
		var err error
		h, a, err = mk(hs[0])
		return err
	})
	end()
	fs.postDir(ctx, cred, &dir, &wcc)
	if err != nil {
		return NodeID{}, Attr{}, wcc, err
	}
	in, err := fs.mapEntry(&dir, name, h, a)
	if err != nil {
		return NodeID{}, Attr{}, wcc, err
	}
	return NodeID{Export: dir.ex.id, Ino: in.Ino, Gen: in.Gen}, dir.ex.attr(in.Ino, a), wcc, nil
}

// postDir fills the post-operation attributes of a directory. They are
// optional in NFSv3, so a failure leaves them out (the client then
// revalidates) rather than failing an operation that was done. Every
// namespace change calls it after the change ended (beginChange's end),
// so the attributes fetched here belong to the new generation.
func (fs *FS) postDir(ctx context.Context, cred Cred, dir *node, wcc *WCC) {
	a, err := fs.getattrOrigin(ctx, cred, dir)
	if err != nil {
		fs.log.Debug().Err(err).Uint64("ino", dir.in.Ino).Msg("no post-op attributes")
		return
	}
	post := dir.ex.attr(dir.in.Ino, a)
	wcc.After = &post
}

// Create makes a regular file.
func (fs *FS) Create(ctx context.Context, cred Cred, dirID NodeID, name string, args CreateArgs) (NodeID, Attr, WCC, error) {
	ex := fs.exports[dirID.Export]
	id, a, wcc, err := fs.make(ctx, cred, dirID, name, args.Attr, func(h backend.Handle) (backend.Handle, backend.Attr, error) {
		if err := checkCreateTruncate(ctx, cred, ex.origin, h, name, args); err != nil {
			return nil, backend.Attr{}, err
		}
		return ex.origin.Create(ctx, cred, h, name, args)
	})
	if err != nil {
		return NodeID{}, Attr{}, wcc, fmt.Errorf("create %q in %s: %w", name, dirID, err)
	}
	return id, a, wcc, nil
}

// checkCreateTruncate checks an UNCHECKED create that carries a size: on
// an existing regular file it truncates, which needs write permission on
// that file (as knfsd checks through nfsd_setattr), not only on the
// directory. Without it anyone who may write the directory could empty
// other users' files.
func checkCreateTruncate(ctx context.Context, cred Cred, o backend.Origin, dir backend.Handle, name string, args CreateArgs) error {
	if args.Mode != CreateUnchecked || args.Attr.SizeBytes == nil {
		return nil
	}
	_, cur, err := o.Lookup(ctx, cred, dir, name)
	switch {
	case errors.Is(err, backend.ErrNotExist):
		return nil
	case err != nil:
		return err
	case cur.Type != backend.TypeRegular:
		return nil // the origin refuses with ErrExist
	}
	return checkWrite(cred, cur)
}

// Mkdir makes a directory.
func (fs *FS) Mkdir(ctx context.Context, cred Cred, dirID NodeID, name string, sa SetAttr) (NodeID, Attr, WCC, error) {
	ex := fs.exports[dirID.Export]
	id, a, wcc, err := fs.make(ctx, cred, dirID, name, sa, func(h backend.Handle) (backend.Handle, backend.Attr, error) {
		return ex.origin.Mkdir(ctx, cred, h, name, sa)
	})
	if err != nil {
		return NodeID{}, Attr{}, wcc, fmt.Errorf("mkdir %q in %s: %w", name, dirID, err)
	}
	return id, a, wcc, nil
}

// Symlink makes a symbolic link to target.
func (fs *FS) Symlink(ctx context.Context, cred Cred, dirID NodeID, name, target string, sa SetAttr) (NodeID, Attr, WCC, error) {
	ex := fs.exports[dirID.Export]
	id, a, wcc, err := fs.make(ctx, cred, dirID, name, sa, func(h backend.Handle) (backend.Handle, backend.Attr, error) {
		if target == "" {
			return nil, backend.Attr{}, fmt.Errorf("empty target: %w", ErrInvalid)
		}
		return ex.origin.Symlink(ctx, cred, h, name, target, sa)
	})
	if err != nil {
		return NodeID{}, Attr{}, wcc, fmt.Errorf("symlink %q in %s: %w", name, dirID, err)
	}
	return id, a, wcc, nil
}

// Mknod makes a FIFO, socket or (root only) device node.
func (fs *FS) Mknod(ctx context.Context, cred Cred, dirID NodeID, name string, t FileType, sa SetAttr, major, minor uint32) (NodeID, Attr, WCC, error) {
	ex := fs.exports[dirID.Export]
	id, a, wcc, err := fs.make(ctx, cred, dirID, name, sa, func(h backend.Handle) (backend.Handle, backend.Attr, error) {
		switch t {
		case TypeFIFO, TypeSocket:
		case TypeChar, TypeBlock:
			if cred.UID != 0 {
				return nil, backend.Attr{}, fmt.Errorf("device node by uid %d: %w", cred.UID, ErrPerm)
			}
		default:
			return nil, backend.Attr{}, fmt.Errorf("mknod of a %s: %w", t, ErrInvalid)
		}
		return ex.origin.Mknod(ctx, cred, h, name, t, sa, major, minor)
	})
	if err != nil {
		return NodeID{}, Attr{}, wcc, fmt.Errorf("mknod %q in %s: %w", name, dirID, err)
	}
	return id, a, wcc, nil
}

// Remove removes a non-directory.
func (fs *FS) Remove(ctx context.Context, cred Cred, dirID NodeID, name string) (WCC, error) {
	wcc, err := fs.unlink(ctx, cred, dirID, name, false)
	if err != nil {
		return wcc, fmt.Errorf("remove %q in %s: %w", name, dirID, err)
	}
	return wcc, nil
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(ctx context.Context, cred Cred, dirID NodeID, name string) (WCC, error) {
	wcc, err := fs.unlink(ctx, cred, dirID, name, true)
	if err != nil {
		return wcc, fmt.Errorf("rmdir %q in %s: %w", name, dirID, err)
	}
	return wcc, nil
}

func (fs *FS) unlink(ctx context.Context, cred Cred, dirID NodeID, name string, isDir bool) (WCC, error) {
	dir, err := fs.resolve(dirID)
	if err != nil {
		return WCC{}, err
	}
	pre, err := fs.getattr(ctx, cred, &dir)
	if err != nil {
		return WCC{}, err
	}
	wcc := WCC{Before: preAttr(pre)}
	if err := checkOldName(name); err != nil {
		return wcc, err
	}
	if err := checkDirWrite(cred, pre); err != nil {
		return wcc, err
	}
	var victim backend.Attr
	end := dir.ex.beginChange()
	err = fs.call(ctx, cred, []*node{&dir}, func(hs []backend.Handle) error {
		var err error
		if _, victim, err = dir.ex.origin.Lookup(ctx, cred, hs[0], name); err != nil {
			return err
		}
		if err := checkSticky(cred, pre, victim); err != nil {
			return err
		}
		switch {
		case isDir && victim.Type != backend.TypeDirectory:
			return ErrNotDir
		case !isDir && victim.Type == backend.TypeDirectory:
			return ErrIsDir
		case isDir:
			return dir.ex.origin.Rmdir(ctx, cred, hs[0], name)
		}
		return dir.ex.origin.Remove(ctx, cred, hs[0], name)
	})
	end()
	fs.postDir(ctx, cred, &dir, &wcc)
	if err != nil {
		return wcc, err
	}
	if isDir || victim.Nlink <= 1 {
		// The object is gone: its handles turn stale. (With more links
		// left it lives on under another name.)
		fs.forgetGone(dir.ex, victim)
	}
	return wcc, nil
}

// Rename moves fromName in fromDir to toName in toDir, replacing a
// compatible existing target.
func (fs *FS) Rename(ctx context.Context, cred Cred, fromDirID NodeID, fromName string, toDirID NodeID, toName string) (WCC, WCC, error) {
	fw, tw, err := fs.rename(ctx, cred, fromDirID, fromName, toDirID, toName)
	if err != nil {
		return fw, tw, fmt.Errorf("rename %q in %s to %q in %s: %w", fromName, fromDirID, toName, toDirID, err)
	}
	return fw, tw, nil
}

func (fs *FS) rename(ctx context.Context, cred Cred, fromDirID NodeID, fromName string, toDirID NodeID, toName string) (WCC, WCC, error) {
	from, err := fs.resolve(fromDirID)
	if err != nil {
		return WCC{}, WCC{}, err
	}
	to, err := fs.resolve(toDirID)
	if err != nil {
		return WCC{}, WCC{}, err
	}
	if from.ex != to.ex {
		return WCC{}, WCC{}, fmt.Errorf("across exports: %w", ErrXDev)
	}
	fpre, err := fs.getattr(ctx, cred, &from)
	if err != nil {
		return WCC{}, WCC{}, err
	}
	tpre, err := fs.getattr(ctx, cred, &to)
	if err != nil {
		return WCC{}, WCC{}, err
	}
	fw, tw := WCC{Before: preAttr(fpre)}, WCC{Before: preAttr(tpre)}
	if err := checkOldName(fromName); err != nil {
		return fw, tw, err
	}
	if err := checkNewName(toName); err != nil {
		return fw, tw, err
	}
	if err := checkDirWrite(cred, fpre); err != nil {
		return fw, tw, err
	}
	if err := checkDirWrite(cred, tpre); err != nil {
		return fw, tw, err
	}
	var moved, replaced backend.Attr
	var newH backend.Handle
	hadTarget := false
	end := from.ex.beginChange()
	err = fs.call(ctx, cred, []*node{&from, &to}, func(hs []backend.Handle) error {
		var err error
		hadTarget = false
		if _, moved, err = from.ex.origin.Lookup(ctx, cred, hs[0], fromName); err != nil {
			return err
		}
		if err := checkSticky(cred, fpre, moved); err != nil {
			return err
		}
		if moved.Type == backend.TypeDirectory && from.in.Ino != to.in.Ino {
			// Moving a directory rewrites its "..": write permission on
			// it is needed, as on Linux.
			if err := checkPerm(cred, moved, permWrite, "move directory"); err != nil {
				return err
			}
		}
		_, replaced, err = from.ex.origin.Lookup(ctx, cred, hs[1], toName)
		switch {
		case err == nil:
			hadTarget = replaced.FileID != moved.FileID
			if err := checkSticky(cred, tpre, replaced); err != nil {
				return err
			}
		case !errors.Is(err, backend.ErrNotExist):
			return err
		}
		if err := from.ex.origin.Rename(ctx, cred, hs[0], fromName, hs[1], toName); err != nil {
			return err
		}
		newH, moved, err = from.ex.origin.Lookup(ctx, cred, hs[1], toName)
		return err
	})
	end()
	fs.postDir(ctx, cred, &from, &fw)
	fs.postDir(ctx, cred, &to, &tw)
	if err != nil {
		return fw, tw, err
	}
	if hadTarget && (replaced.Type == backend.TypeDirectory || replaced.Nlink <= 1) {
		fs.forgetGone(to.ex, replaced)
	}
	// Record the new location (and, for a path-based origin, the new
	// handle) of the moved object.
	if _, err := fs.mapEntry(&to, toName, newH, moved); err != nil {
		return fw, tw, err
	}
	return fw, tw, nil
}

// Link makes name in dir another name of n.
func (fs *FS) Link(ctx context.Context, cred Cred, id NodeID, dirID NodeID, name string) (Attr, WCC, error) {
	a, wcc, err := fs.link(ctx, cred, id, dirID, name)
	if err != nil {
		return a, wcc, fmt.Errorf("link %s as %q in %s: %w", id, name, dirID, err)
	}
	return a, wcc, nil
}

func (fs *FS) link(ctx context.Context, cred Cred, id NodeID, dirID NodeID, name string) (Attr, WCC, error) {
	n, err := fs.resolve(id)
	if err != nil {
		return Attr{}, WCC{}, err
	}
	dir, err := fs.resolve(dirID)
	if err != nil {
		return Attr{}, WCC{}, err
	}
	if n.ex != dir.ex {
		return Attr{}, WCC{}, fmt.Errorf("across exports: %w", ErrXDev)
	}
	pre, err := fs.getattr(ctx, cred, &dir)
	if err != nil {
		return Attr{}, WCC{}, err
	}
	wcc := WCC{Before: preAttr(pre)}
	if err := checkNewName(name); err != nil {
		return Attr{}, wcc, err
	}
	if err := checkDirWrite(cred, pre); err != nil {
		return Attr{}, wcc, err
	}
	var a backend.Attr
	var newH backend.Handle
	end := n.ex.beginChange()
	err = fs.call(ctx, cred, []*node{&n, &dir}, func(hs []backend.Handle) error {
		var err error
		if a, err = n.ex.origin.Link(ctx, cred, hs[0], hs[1], name); err != nil {
			return err
		}
		if h, la, lerr := n.ex.origin.Lookup(ctx, cred, hs[1], name); lerr == nil && la.FileID == a.FileID {
			newH = h
		}
		return nil
	})
	end()
	fs.postDir(ctx, cred, &dir, &wcc)
	if err != nil {
		return Attr{}, wcc, err
	}
	// Record the object under its new name. The usual next step is to
	// remove the old one (git objects, maildir delivery, NFS lock files
	// all link a temporary file into place and unlink it, often across
	// directories); the inode's origin handle then stays valid. The link
	// is made either way, so a failure here is only logged.
	if newH != nil {
		if _, err := fs.mapEntry(&dir, name, newH, a); err != nil {
			fs.log.Warn().Err(err).Uint64("ino", n.in.Ino).Str("name", name).Msg("could not record new link")
		}
	}
	return n.ex.attr(n.in.Ino, a), wcc, nil
}

// forgetGone forgets the inode of an object the origin no longer has,
// after the operation that removed it succeeded. A failure is logged, not
// returned: the operation was done, and a record left behind is harmless
// (its origin handle no longer resolves, so its NodeID is stale anyway).
func (fs *FS) forgetGone(ex *export, a backend.Attr) {
	if err := fs.forget(ex, a); err != nil {
		fs.log.Warn().Err(err).Uint16("export", ex.id).Uint64("fileid", a.FileID).Msg("could not forget removed object")
	}
}
