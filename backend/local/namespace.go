package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nascache/nascache/backend"
	"golang.org/x/sys/unix"
)

// Default permission bits of new objects whose SetAttr carries no mode.
const (
	defaultFileMode = 0o644
	defaultDirMode  = 0o755
)

// newOwner is who owns a new object in parent, as Linux decides it for a
// process with cred's ids: the parent's group when the parent is setgid.
// Explicit uid/gid in sa win (NFSv3 CREATE may carry them).
func newOwner(cred backend.Cred, parent backend.Attr, sa backend.SetAttr) (uid, gid int) {
	uid, gid = int(cred.UID), int(cred.GID)
	if parent.Mode&unix.S_ISGID != 0 {
		gid = int(parent.GID)
	}
	if sa.UID != nil {
		uid = int(*sa.UID)
	}
	if sa.GID != nil {
		gid = int(*sa.GID)
	}
	return uid, gid
}

func modeOr(sa backend.SetAttr, def uint32) uint32 {
	if sa.Mode != nil {
		return *sa.Mode & 0o7777
	}
	return def
}

func timespec(how backend.SetTime, v time.Time) unix.Timespec {
	switch how {
	case backend.TimeServer:
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	case backend.TimeClient:
		return unix.Timespec{Sec: v.Unix(), Nsec: int64(v.Nanosecond())}
	}
	return unix.Timespec{Nsec: unix.UTIME_OMIT}
}

// setTimesAt applies sa's times to name in the directory fd without
// following a symlink.
func setTimesAt(fd int, name string, sa backend.SetAttr) error {
	if sa.Atime == backend.TimeDontChange && sa.Mtime == backend.TimeDontChange {
		return nil
	}
	ts := []unix.Timespec{timespec(sa.Atime, sa.AtimeVal), timespec(sa.Mtime, sa.MtimeVal)}
	return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// chmodAt sets the mode of name in the directory fd, never following a
// symlink: the object is opened with O_PATH|O_NOFOLLOW and changed through
// its /proc/self/fd link, which names exactly that inode. Symlinks have
// no mode of their own on Linux and are left alone, as knfsd does.
func chmodAt(fd int, name string, mode uint32) error {
	pfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	return unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(pfd), mode, 0)
}

// truncateAt sets the size of the regular file name in the directory fd.
func truncateAt(fd int, name string, size uint64, ino uint64) error {
	ffd, err := unix.Openat(fd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ffd)
	var st unix.Stat_t
	if err := unix.Fstat(ffd, &st); err != nil {
		return err
	}
	if st.Ino != ino {
		return fmt.Errorf("%q changed while opening: %w", name, backend.ErrStale)
	}
	if size > 1<<62 {
		return backend.ErrFileTooBig
	}
	return unix.Ftruncate(ffd, int64(size))
}

// setAttrAt applies sa to the object name (of type t, inode ino) in the
// directory fd: owner first (chown clears setuid/setgid), then mode,
// size, and times last (a truncate moves mtime).
func setAttrAt(fd int, name string, t backend.FileType, ino uint64, sa backend.SetAttr) error {
	if sa.UID != nil || sa.GID != nil {
		uid, gid := -1, -1
		if sa.UID != nil {
			uid = int(*sa.UID)
		}
		if sa.GID != nil {
			gid = int(*sa.GID)
		}
		if err := unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if sa.Mode != nil {
		if err := chmodAt(fd, name, *sa.Mode&0o7777); err != nil {
			return err
		}
	}
	if sa.SizeBytes != nil {
		switch t {
		case backend.TypeRegular:
			if err := truncateAt(fd, name, *sa.SizeBytes, ino); err != nil {
				return err
			}
		case backend.TypeDirectory:
			return backend.ErrIsDir
		default:
			return backend.ErrInvalid
		}
	}
	return setTimesAt(fd, name, sa)
}

// SetAttr implements backend.Origin.
func (o *Origin) SetAttr(ctx context.Context, _ backend.Cred, h backend.Handle, sa backend.SetAttr, guardCtime *time.Time) (backend.Attr, error) {
	obj, err := o.resolve(ctx, h)
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local setattr: %w", err)
	}
	if guardCtime != nil && !obj.attr.Ctime.Equal(*guardCtime) {
		return backend.Attr{}, fmt.Errorf("local setattr %q: ctime %v, guard %v: %w", obj.path, obj.attr.Ctime, *guardCtime, backend.ErrNotSync)
	}
	dir, name := split(obj.path)
	var a backend.Attr
	err = o.withDir(dir, func(fd int) error {
		if err := setAttrAt(fd, name, obj.attr.Type, obj.attr.FileID, sa); err != nil {
			return mapErr(err)
		}
		a, err = statAt(fd, name)
		return err
	})
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local setattr %q: %w", obj.path, err)
	}
	return a, nil
}

// newChild resolves dir and name for an object about to be made there.
func (o *Origin) newChild(ctx context.Context, dir backend.Handle, name string) (object, string, error) {
	d, err := o.resolveDir(ctx, dir)
	if err != nil {
		return object{}, "", err
	}
	if err := checkName(name); err != nil {
		return object{}, "", err
	}
	p, err := join(d.path, name)
	if err != nil {
		return object{}, "", err
	}
	return d, p, ctx.Err()
}

// Create implements backend.Origin.
func (o *Origin) Create(ctx context.Context, cred backend.Cred, dir backend.Handle, name string, args backend.CreateArgs) (backend.Handle, backend.Attr, error) {
	d, p, err := o.newChild(ctx, dir, name)
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local create %q: %w", name, err)
	}
	var a backend.Attr
	err = o.withDir(d.path, func(fd int) error {
		nfd, err := unix.Openat(fd, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			a, err = o.createExisting(fd, name, args)
			return err
		}
		if err != nil {
			return mapErr(err)
		}
		err = initFile(nfd, cred, d.attr, args)
		unix.Close(nfd)
		if err != nil {
			// Do not leave a half-made file owned by root behind.
			_ = unix.Unlinkat(fd, name, 0) // best effort; err is reported
			return mapErr(err)
		}
		a, err = statAt(fd, name)
		return err
	})
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local create %q: %w", p, err)
	}
	return encodeHandle(a.FileID, p), a, nil
}

// createExisting handles a Create whose name exists.
func (o *Origin) createExisting(fd int, name string, args backend.CreateArgs) (backend.Attr, error) {
	a, err := statAt(fd, name)
	if err != nil {
		return backend.Attr{}, err
	}
	switch args.Mode {
	case backend.CreateUnchecked:
		if a.Type != backend.TypeRegular {
			return backend.Attr{}, backend.ErrExist
		}
		if args.Attr.SizeBytes == nil {
			return a, nil
		}
		if err := truncateAt(fd, name, *args.Attr.SizeBytes, a.FileID); err != nil {
			return backend.Attr{}, mapErr(err)
		}
		return statAt(fd, name)
	case backend.CreateExclusive:
		if verifierMatches(a, args.Verifier) {
			return a, nil // a retry of the create that made it
		}
	}
	return backend.Attr{}, backend.ErrExist
}

// initFile gives a new file its owner, mode and initial attributes.
func initFile(fd int, cred backend.Cred, parent backend.Attr, args backend.CreateArgs) error {
	sa := args.Attr
	if args.Mode == backend.CreateExclusive {
		sa = backend.SetAttr{} // EXCLUSIVE carries no attributes
	}
	uid, gid := newOwner(cred, parent, sa)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, modeOr(sa, defaultFileMode)); err != nil {
		return err
	}
	if args.Mode == backend.CreateExclusive {
		at, mt := verifierTimes(args.Verifier)
		return futimens(fd, []unix.Timespec{at, mt})
	}
	if sa.SizeBytes != nil && *sa.SizeBytes != 0 {
		if err := unix.Ftruncate(fd, int64(min(*sa.SizeBytes, 1<<62))); err != nil {
			return err
		}
	}
	if sa.Atime != backend.TimeDontChange || sa.Mtime != backend.TimeDontChange {
		ts := []unix.Timespec{timespec(sa.Atime, sa.AtimeVal), timespec(sa.Mtime, sa.MtimeVal)}
		return futimens(fd, ts)
	}
	return nil
}

// futimens sets the times of an open file, through its /proc/self/fd
// link (utimensat with an empty path is not portable across kernels).
func futimens(fd int, ts []unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0)
}

// Mkdir implements backend.Origin. A directory made in a setgid directory
// is setgid itself, as on Linux.
func (o *Origin) Mkdir(ctx context.Context, cred backend.Cred, dir backend.Handle, name string, sa backend.SetAttr) (backend.Handle, backend.Attr, error) {
	d, p, err := o.newChild(ctx, dir, name)
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local mkdir %q: %w", name, err)
	}
	var a backend.Attr
	err = o.withDir(d.path, func(fd int) error {
		if err := unix.Mkdirat(fd, name, 0o700); err != nil {
			return mapErr(err)
		}
		mode := modeOr(sa, defaultDirMode)
		if d.attr.Mode&unix.S_ISGID != 0 {
			mode |= unix.S_ISGID
		}
		rest := backend.SetAttr{Atime: sa.Atime, AtimeVal: sa.AtimeVal, Mtime: sa.Mtime, MtimeVal: sa.MtimeVal}
		if err := o.initNode(fd, name, cred, d.attr, sa, &mode, rest); err != nil {
			_ = unix.Unlinkat(fd, name, unix.AT_REMOVEDIR) // best effort; err is reported
			return err
		}
		a, err = statAt(fd, name)
		return err
	})
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local mkdir %q: %w", p, err)
	}
	return encodeHandle(a.FileID, p), a, nil
}

// initNode gives a new non-regular object its owner, mode (nil: leave as
// made) and the remaining attributes in rest.
func (o *Origin) initNode(fd int, name string, cred backend.Cred, parent backend.Attr, sa backend.SetAttr, mode *uint32, rest backend.SetAttr) error {
	uid, gid := newOwner(cred, parent, sa)
	if err := unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return mapErr(err)
	}
	if mode != nil {
		if err := chmodAt(fd, name, *mode); err != nil {
			return mapErr(err)
		}
	}
	if err := setTimesAt(fd, name, rest); err != nil {
		return mapErr(err)
	}
	return nil
}

// Symlink implements backend.Origin.
func (o *Origin) Symlink(ctx context.Context, cred backend.Cred, dir backend.Handle, name, target string, sa backend.SetAttr) (backend.Handle, backend.Attr, error) {
	d, p, err := o.newChild(ctx, dir, name)
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local symlink %q: %w", name, err)
	}
	if target == "" {
		return nil, backend.Attr{}, fmt.Errorf("local symlink %q: empty target: %w", p, backend.ErrInvalid)
	}
	if len(target) > maxPathBytes {
		return nil, backend.Attr{}, fmt.Errorf("local symlink %q: target of %d bytes: %w", p, len(target), backend.ErrNameTooLong)
	}
	var a backend.Attr
	err = o.withDir(d.path, func(fd int) error {
		if err := unix.Symlinkat(target, fd, name); err != nil {
			return mapErr(err)
		}
		rest := backend.SetAttr{Atime: sa.Atime, AtimeVal: sa.AtimeVal, Mtime: sa.Mtime, MtimeVal: sa.MtimeVal}
		if err := o.initNode(fd, name, cred, d.attr, sa, nil, rest); err != nil {
			_ = unix.Unlinkat(fd, name, 0) // best effort; err is reported
			return err
		}
		a, err = statAt(fd, name)
		return err
	})
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local symlink %q: %w", p, err)
	}
	return encodeHandle(a.FileID, p), a, nil
}

// Mknod implements backend.Origin.
func (o *Origin) Mknod(ctx context.Context, cred backend.Cred, dir backend.Handle, name string, t backend.FileType, sa backend.SetAttr, major, minor uint32) (backend.Handle, backend.Attr, error) {
	d, p, err := o.newChild(ctx, dir, name)
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local mknod %q: %w", name, err)
	}
	var kind uint32
	var dev uint64
	switch t {
	case backend.TypeFIFO:
		kind = unix.S_IFIFO
	case backend.TypeSocket:
		kind = unix.S_IFSOCK
	case backend.TypeChar:
		kind, dev = unix.S_IFCHR, unix.Mkdev(major, minor)
	case backend.TypeBlock:
		kind, dev = unix.S_IFBLK, unix.Mkdev(major, minor)
	default:
		return nil, backend.Attr{}, fmt.Errorf("local mknod %q of type %s: %w", p, t, backend.ErrInvalid)
	}
	var a backend.Attr
	err = o.withDir(d.path, func(fd int) error {
		if err := unix.Mknodat(fd, name, kind|0o600, int(dev)); err != nil {
			return mapErr(err)
		}
		mode := modeOr(sa, defaultFileMode)
		rest := backend.SetAttr{Atime: sa.Atime, AtimeVal: sa.AtimeVal, Mtime: sa.Mtime, MtimeVal: sa.MtimeVal}
		if err := o.initNode(fd, name, cred, d.attr, sa, &mode, rest); err != nil {
			_ = unix.Unlinkat(fd, name, 0) // best effort; err is reported
			return err
		}
		a, err = statAt(fd, name)
		return err
	})
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local mknod %q: %w", p, err)
	}
	return encodeHandle(a.FileID, p), a, nil
}

// Link implements backend.Origin.
func (o *Origin) Link(ctx context.Context, _ backend.Cred, h backend.Handle, dir backend.Handle, name string) (backend.Attr, error) {
	obj, err := o.resolve(ctx, h)
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local link %q: %w", name, err)
	}
	if obj.attr.Type == backend.TypeDirectory {
		return backend.Attr{}, fmt.Errorf("local link %q: %w", obj.path, backend.ErrIsDir)
	}
	d, p, err := o.newChild(ctx, dir, name)
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local link %q: %w", name, err)
	}
	odir, oname := split(obj.path)
	var a backend.Attr
	err = o.withDir(odir, func(ofd int) error {
		return o.withDir(d.path, func(fd int) error {
			if err := unix.Linkat(ofd, oname, fd, name, 0); err != nil {
				return mapErr(err)
			}
			a, err = statAt(fd, name)
			return err
		})
	})
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local link %q to %q: %w", obj.path, p, err)
	}
	return a, nil
}

// unlink removes name from dir (flags as for unlinkat).
func (o *Origin) unlink(ctx context.Context, op string, dir backend.Handle, name string, flags int) error {
	d, err := o.resolveDir(ctx, dir)
	if err == nil {
		err = checkName(name)
	}
	var p string
	if err == nil {
		p, err = join(d.path, name)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = o.withDir(d.path, func(fd int) error { return mapErr(unix.Unlinkat(fd, name, flags)) })
	}
	if err != nil {
		return fmt.Errorf("local %s %q: %w", op, name, err)
	}
	o.fds.dropPath(p)
	return nil
}

// Remove implements backend.Origin.
func (o *Origin) Remove(ctx context.Context, _ backend.Cred, dir backend.Handle, name string) error {
	return o.unlink(ctx, "remove", dir, name, 0)
}

// Rmdir implements backend.Origin.
func (o *Origin) Rmdir(ctx context.Context, _ backend.Cred, dir backend.Handle, name string) error {
	return o.unlink(ctx, "rmdir", dir, name, unix.AT_REMOVEDIR)
}

// Rename implements backend.Origin.
func (o *Origin) Rename(ctx context.Context, _ backend.Cred, fromDir backend.Handle, fromName string, toDir backend.Handle, toName string) error {
	err := o.rename(ctx, fromDir, fromName, toDir, toName)
	if err != nil {
		return fmt.Errorf("local rename %q to %q: %w", fromName, toName, err)
	}
	return nil
}

func (o *Origin) rename(ctx context.Context, fromDir backend.Handle, fromName string, toDir backend.Handle, toName string) error {
	fd, err := o.resolveDir(ctx, fromDir)
	if err != nil {
		return err
	}
	td, err := o.resolveDir(ctx, toDir)
	if err != nil {
		return err
	}
	if err := checkName(fromName); err != nil {
		return err
	}
	if err := checkName(toName); err != nil {
		return err
	}
	fp, err := join(fd.path, fromName)
	if err != nil {
		return err
	}
	tp, err := join(td.path, toName)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = o.withDir(fd.path, func(ffd int) error {
		return o.withDir(td.path, func(tfd int) error {
			return mapErr(unix.Renameat(ffd, fromName, tfd, toName))
		})
	})
	if err != nil {
		return err
	}
	o.fds.dropPath(fp)
	o.fds.dropPath(tp)
	return nil
}

// ReadDir implements backend.Origin. Entries come in the order of the
// directory stream, which is stable while the directory does not change.
func (o *Origin) ReadDir(ctx context.Context, _ backend.Cred, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	if err := o.readDir(ctx, dir, fn); err != nil {
		return fmt.Errorf("local readdir: %w", err)
	}
	return nil
}

func (o *Origin) readDir(ctx context.Context, dir backend.Handle, fn func(backend.DirEntry) bool) error {
	d, err := o.resolveDir(ctx, dir)
	if err != nil {
		return err
	}
	f, err := o.root.OpenFile(osPath(d.path), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return mapErr(err)
	}
	defer f.Close() // read-only directory descriptor
	fi, err := f.Stat()
	if err != nil {
		return mapErr(err)
	}
	if stOf(fi).Ino != d.attr.FileID {
		return fmt.Errorf("%q changed while opening: %w", d.path, backend.ErrStale)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return mapErr(err)
	}
	batch := make([]backend.DirEntry, 0, 1024)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, rerr := f.Readdirnames(1024)
		batch = batch[:0]
		var serr error
		cerr := rc.Control(func(fd uintptr) {
			for _, name := range names {
				a, err := statAt(int(fd), name)
				if errors.Is(err, backend.ErrNotExist) {
					continue // removed since the directory was read
				}
				if err != nil {
					serr = fmt.Errorf("%q: %w", name, err)
					return
				}
				p, err := join(d.path, name)
				if err != nil {
					serr = err
					return
				}
				batch = append(batch, backend.DirEntry{Name: name, Handle: encodeHandle(a.FileID, p), Attr: a})
			}
		})
		if cerr != nil {
			return mapErr(cerr)
		}
		if serr != nil {
			return serr
		}
		for _, e := range batch {
			if !fn(e) {
				return nil
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return mapErr(rerr)
		}
		if len(names) == 0 {
			return nil
		}
	}
}

// statfsOf runs statfs on the directory holding obj (obj itself for a
// directory).
func (o *Origin) statfsOf(ctx context.Context, h backend.Handle) (unix.Statfs_t, error) {
	var sfs unix.Statfs_t
	obj, err := o.resolve(ctx, h)
	if err != nil {
		return sfs, err
	}
	dir := obj.path
	if obj.attr.Type != backend.TypeDirectory {
		dir, _ = split(obj.path)
	}
	err = o.withDir(dir, func(fd int) error { return mapErr(unix.Fstatfs(fd, &sfs)) })
	return sfs, err
}

// FSStat implements backend.Origin.
func (o *Origin) FSStat(ctx context.Context, _ backend.Cred, h backend.Handle) (backend.FSStat, error) {
	sfs, err := o.statfsOf(ctx, h)
	if err != nil {
		return backend.FSStat{}, fmt.Errorf("local fsstat: %w", err)
	}
	bs := uint64(sfs.Frsize)
	if bs == 0 {
		bs = uint64(sfs.Bsize)
	}
	return backend.FSStat{
		TotalBytes: sfs.Blocks * bs, FreeBytes: sfs.Bfree * bs, AvailBytes: sfs.Bavail * bs,
		TotalFiles: sfs.Files, FreeFiles: sfs.Ffree, AvailFiles: sfs.Ffree,
	}, nil
}

// linkMax is LINK_MAX by file system magic, as glibc's pathconf reports it.
func linkMax(fsType int64) uint32 {
	switch fsType {
	case unix.EXT4_SUPER_MAGIC: // also ext2 and ext3
		return 65000
	case unix.XFS_SUPER_MAGIC:
		return 2147483647
	case unix.BTRFS_SUPER_MAGIC:
		return 65535
	case unix.TMPFS_MAGIC, unix.OVERLAYFS_SUPER_MAGIC:
		return 65000
	}
	return 127
}

// PathConf implements backend.Origin.
func (o *Origin) PathConf(ctx context.Context, _ backend.Cred, h backend.Handle) (backend.PathConf, error) {
	sfs, err := o.statfsOf(ctx, h)
	if err != nil {
		return backend.PathConf{}, fmt.Errorf("local pathconf: %w", err)
	}
	nameMax := uint32(sfs.Namelen)
	if nameMax == 0 || nameMax > 255 {
		nameMax = 255
	}
	return backend.PathConf{
		LinkMax: linkMax(int64(sfs.Type)), NameMax: nameMax, NoTrunc: true,
		ChownRestricted: true, CaseInsensitive: false, CasePreserving: true,
	}, nil
}
