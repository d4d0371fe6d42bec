package local

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Options configure New.
type Options struct {
	// Logger receives open/close events.
	Logger zerolog.Logger
	// MaxOpenFiles bounds the descriptor cache (256 when zero).
	MaxOpenFiles int
}

// Origin serves a local directory. It implements backend.Origin.
type Origin struct {
	root *os.Root
	// rootDir is the root directory opened once, for the fstatat of
	// cached (os.Root does not expose its descriptor).
	rootDir *os.File
	fds     *fdCache
	log     zerolog.Logger
}

var _ backend.Origin = (*Origin)(nil)

// New opens dir as an origin. The process is expected to run as root, so
// that new objects can be given to the client's uid and gid.
func New(dir string, opts Options) (*Origin, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("local origin %s: %w", dir, mapErr(err))
	}
	fi, err := r.Lstat(".")
	if err != nil || !fi.IsDir() {
		_ = r.Close() // the stat error is the one to report
		return nil, fmt.Errorf("local origin %s: not a directory: %w", dir, backend.ErrNotDir)
	}
	n := opts.MaxOpenFiles
	if n <= 0 {
		n = 256
	}
	rootDir, err := r.OpenFile(".", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		_ = r.Close() // the open error is the one to report
		return nil, fmt.Errorf("local origin %s: %w", dir, mapErr(err))
	}
	opts.Logger.Info().Str("dir", dir).Msg("local origin open")
	return &Origin{root: r, rootDir: rootDir, fds: newFDCache(n), log: opts.Logger}, nil
}

// Properties implements backend.Origin.
func (o *Origin) Properties() backend.Properties {
	return backend.Properties{
		Name: "local", AtomicRename: true, HardLinks: true, Symlinks: true,
		SpecialFiles: true, MaxConcurrency: 64,
	}
}

// Close implements backend.Origin.
func (o *Origin) Close() error {
	o.fds.closeAllEntries()
	err := errors.Join(o.rootDir.Close(), o.root.Close())
	if err != nil {
		return fmt.Errorf("close local origin: %w", err)
	}
	return nil
}

// mapErr turns an error of the os or unix packages into one matching a
// backend sentinel, keeping the cause.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.EBUSY):
		// A local EBUSY (rmdir or rename of a mount point, a busy
		// device) does not pass with time; backend.FromErrno would make
		// it retryable, and a client would retry it for ever.
		return fmt.Errorf("%w: %w", backend.ErrIO, err)
	case errors.As(err, &errno):
		return fmt.Errorf("%w: %w", backend.FromErrno(errno), err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", backend.ErrNotExist, err)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %w", backend.ErrExist, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", backend.ErrAccess, err)
	}
	// os.Root refuses paths that escape it with a plain error: an object
	// that can only be reached by escaping does not exist for us.
	return fmt.Errorf("%w: %w", backend.ErrNotExist, err)
}

func stOf(fi fs.FileInfo) *syscall.Stat_t {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		panic("local: lstat without syscall.Stat_t")
	}
	return st
}

// FileTypeOf maps a POSIX st_mode to a backend.FileType (0 if unknown).
func FileTypeOf(mode uint32) backend.FileType {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return backend.TypeRegular
	case syscall.S_IFDIR:
		return backend.TypeDirectory
	case syscall.S_IFLNK:
		return backend.TypeSymlink
	case syscall.S_IFBLK:
		return backend.TypeBlock
	case syscall.S_IFCHR:
		return backend.TypeChar
	case syscall.S_IFSOCK:
		return backend.TypeSocket
	case syscall.S_IFIFO:
		return backend.TypeFIFO
	}
	return 0
}

func attrOf(st *syscall.Stat_t) backend.Attr {
	return backend.Attr{
		Type:      FileTypeOf(st.Mode),
		Mode:      st.Mode & 0o7777,
		Nlink:     uint32(st.Nlink),
		UID:       st.Uid,
		GID:       st.Gid,
		SizeBytes: uint64(st.Size),
		UsedBytes: uint64(st.Blocks) * 512,
		RdevMajor: unix.Major(st.Rdev),
		RdevMinor: unix.Minor(st.Rdev),
		FSID:      st.Dev,
		FileID:    st.Ino,
		Atime:     time.Unix(st.Atim.Sec, st.Atim.Nsec),
		Mtime:     time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Ctime:     time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
	}
}

func unixAttr(st *unix.Stat_t) backend.Attr {
	return attrOf(&syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blocks: st.Blocks,
		Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
	})
}

// object is a resolved handle: its path and current attributes.
type object struct {
	path string
	attr backend.Attr
}

// resolve checks that h still names the object it was issued for.
func (o *Origin) resolve(ctx context.Context, h backend.Handle) (object, error) {
	if err := ctx.Err(); err != nil {
		return object{}, err
	}
	ino, p, err := decodeHandle(h)
	if err != nil {
		return object{}, err
	}
	fi, err := o.root.Lstat(osPath(p))
	if err != nil {
		err = mapErr(err)
		if errors.Is(err, backend.ErrNotExist) || errors.Is(err, backend.ErrNotDir) {
			return object{}, fmt.Errorf("%q is gone: %w", p, backend.ErrStale)
		}
		return object{}, err
	}
	a := attrOf(stOf(fi))
	if a.FileID != ino {
		return object{}, fmt.Errorf("%q is inode %d, handle says %d: %w", p, a.FileID, ino, backend.ErrStale)
	}
	return object{path: p, attr: a}, nil
}

// resolveDir resolves h and checks that it is a directory.
func (o *Origin) resolveDir(ctx context.Context, h backend.Handle) (object, error) {
	d, err := o.resolve(ctx, h)
	if err != nil {
		return object{}, err
	}
	if d.attr.Type != backend.TypeDirectory {
		return object{}, fmt.Errorf("%q: %w", d.path, backend.ErrNotDir)
	}
	return d, nil
}

// withDir opens the directory at p through the root and calls fn with its
// descriptor. Every *at call made in fn uses a single-component name and,
// where the call would follow a final symlink, AT_SYMLINK_NOFOLLOW, so
// nothing reaches outside the root.
func (o *Origin) withDir(p string, fn func(fd int) error) error {
	f, err := o.root.OpenFile(osPath(p), os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return mapErr(err)
	}
	defer f.Close() // read-only directory descriptor
	rc, err := f.SyscallConn()
	if err != nil {
		return mapErr(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return mapErr(err)
	}
	return ferr
}

// statAt lstats name in the directory fd.
func statAt(fd int, name string) (backend.Attr, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return backend.Attr{}, mapErr(err)
	}
	return unixAttr(&st), nil
}

// Root implements backend.Origin.
func (o *Origin) Root(ctx context.Context) (backend.Handle, backend.Attr, error) {
	if err := ctx.Err(); err != nil {
		return nil, backend.Attr{}, err
	}
	fi, err := o.root.Lstat(".")
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local root: %w", mapErr(err))
	}
	a := attrOf(stOf(fi))
	return encodeHandle(a.FileID, ""), a, nil
}

// GetAttr implements backend.Origin. A file whose descriptor is cached
// is fstat'ed (see cached); anything else is looked up by path.
func (o *Origin) GetAttr(ctx context.Context, _ backend.Cred, h backend.Handle) (backend.Attr, error) {
	if err := ctx.Err(); err != nil {
		return backend.Attr{}, err
	}
	if e, obj, ok := o.cached(h, false); ok {
		o.fds.release(e)
		return obj.attr, nil
	}
	obj, err := o.resolve(ctx, h)
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local getattr: %w", err)
	}
	return obj.attr, nil
}

// Lookup implements backend.Origin.
func (o *Origin) Lookup(ctx context.Context, _ backend.Cred, dir backend.Handle, name string) (backend.Handle, backend.Attr, error) {
	h, a, err := o.lookup(ctx, dir, name)
	if err != nil {
		return nil, backend.Attr{}, fmt.Errorf("local lookup %q: %w", name, err)
	}
	return h, a, nil
}

func (o *Origin) lookup(ctx context.Context, dir backend.Handle, name string) (backend.Handle, backend.Attr, error) {
	d, err := o.resolveDir(ctx, dir)
	if err != nil {
		return nil, backend.Attr{}, err
	}
	switch name {
	case ".":
		return dir, d.attr, nil
	case "..":
		pp, _ := split(d.path)
		if d.path == "" {
			pp = ""
		}
		fi, err := o.root.Lstat(osPath(pp))
		if err != nil {
			return nil, backend.Attr{}, mapErr(err)
		}
		a := attrOf(stOf(fi))
		return encodeHandle(a.FileID, pp), a, nil
	}
	if err := checkName(name); err != nil {
		return nil, backend.Attr{}, err
	}
	p, err := join(d.path, name)
	if err != nil {
		return nil, backend.Attr{}, err
	}
	var a backend.Attr
	if err := o.withDir(d.path, func(fd int) error {
		a, err = statAt(fd, name)
		return err
	}); err != nil {
		return nil, backend.Attr{}, err
	}
	return encodeHandle(a.FileID, p), a, nil
}

// ReadLink implements backend.Origin.
func (o *Origin) ReadLink(ctx context.Context, _ backend.Cred, h backend.Handle) (string, error) {
	obj, err := o.resolve(ctx, h)
	if err != nil {
		return "", fmt.Errorf("local readlink: %w", err)
	}
	if obj.attr.Type != backend.TypeSymlink {
		return "", fmt.Errorf("local readlink %q: not a symlink: %w", obj.path, backend.ErrInvalid)
	}
	t, err := o.root.Readlink(obj.path)
	if err != nil {
		return "", fmt.Errorf("local readlink %q: %w", obj.path, mapErr(err))
	}
	return t, nil
}

// cached returns the held cache entry of h and the attributes of its
// file, when a descriptor is cached (writable if write is set) and the
// handle's path still names the descriptor's inode, which is the handle's
// inode. This is the fast path of GetAttr, Read, Write and Commit: an
// fstat of the descriptor and an fstatat of the path from the root's
// descriptor, instead of resolve's component-by-component walk through
// the Root.
//
// The fstatat may follow a symlink in a directory component (the walk
// would not), but it only decides whether the path reaches the very
// inode already open, which was opened through the Root: it reveals
// nothing outside and serves nothing the descriptor does not. Any other
// outcome falls back to the walk, which gives the exact answer.
func (o *Origin) cached(h backend.Handle, write bool) (*fdEntry, object, bool) {
	if len(h) < handleHeader || h[0] != handleVersion {
		return nil, object{}, false
	}
	e := o.fds.get(h, write)
	if e == nil {
		return nil, object{}, false
	}
	a, err := fstatAttr(e.f)
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstatat(int(o.rootDir.Fd()), osPath(e.path), &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil || a.FileID != binary.BigEndian.Uint64(h[1:]) || st.Ino != a.FileID || st.Dev != a.FSID {
		o.fds.release(e)
		return nil, object{}, false
	}
	return e, object{path: e.path, attr: a}, true
}

// open returns a held descriptor of the regular file h names.
func (o *Origin) open(ctx context.Context, h backend.Handle, write bool) (*fdEntry, object, error) {
	if err := ctx.Err(); err != nil {
		return nil, object{}, err
	}
	if e, obj, ok := o.cached(h, write); ok {
		return e, obj, nil
	}
	obj, err := o.resolve(ctx, h)
	if err != nil {
		return nil, object{}, err
	}
	switch obj.attr.Type {
	case backend.TypeRegular:
	case backend.TypeDirectory:
		return nil, object{}, fmt.Errorf("%q: %w", obj.path, backend.ErrIsDir)
	default:
		return nil, object{}, fmt.Errorf("%q is a %s: %w", obj.path, obj.attr.Type, backend.ErrInvalid)
	}
	if e := o.fds.get(h, write); e != nil {
		return e, obj, nil
	}
	f, err := o.root.OpenFile(obj.path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	writable := err == nil
	if err != nil && !write {
		f, err = o.root.OpenFile(obj.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, object{}, mapErr(err)
	}
	// The path was checked before the open; check that the open reached
	// the same inode, in case the name was replaced in between.
	fi, err := f.Stat()
	if err != nil || stOf(fi).Ino != obj.attr.FileID {
		_ = f.Close() // wrong or unusable file: nothing was written
		return nil, object{}, fmt.Errorf("%q changed while opening: %w", obj.path, backend.ErrStale)
	}
	return o.fds.add(string(h), obj.path, f, writable), obj, nil
}

// Read implements backend.Origin.
func (o *Origin) Read(ctx context.Context, _ backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, error) {
	e, obj, err := o.open(ctx, h, false)
	if err != nil {
		return 0, false, fmt.Errorf("local read at %d: %w", off, err)
	}
	defer o.fds.release(e)
	if off > 1<<62 {
		return 0, true, nil
	}
	n, err := e.f.ReadAt(p, int64(off))
	if err != nil && !errors.Is(err, io.EOF) {
		return n, false, fmt.Errorf("local read %q at %d: %w", obj.path, off, mapErr(err))
	}
	eof := errors.Is(err, io.EOF)
	// obj.attr was taken just before the read. Short of the size it
	// had then, say "not the end" without another fstat: should the
	// file have shrunk meanwhile, the client's next READ finds the end.
	// At or past that size, ask again, in case the file grew.
	if !eof && off+uint64(n) >= obj.attr.SizeBytes {
		fi, err := e.f.Stat()
		if err != nil {
			return n, false, fmt.Errorf("local read %q: %w", obj.path, mapErr(err))
		}
		eof = off+uint64(n) >= uint64(fi.Size())
	}
	return n, eof, nil
}

// ReadAttr is Read that also returns the file's attributes as they are
// right after the read (one fstat of the descriptor read from), so a
// caller can check which version of the file it read without another
// call. The attributes are always present (true).
func (o *Origin) ReadAttr(ctx context.Context, _ backend.Cred, h backend.Handle, p []byte, off uint64) (int, bool, backend.Attr, bool, error) {
	e, obj, err := o.open(ctx, h, false)
	if err != nil {
		return 0, false, backend.Attr{}, false, fmt.Errorf("local read at %d: %w", off, err)
	}
	defer o.fds.release(e)
	n := 0
	if off <= 1<<62 {
		n, err = e.f.ReadAt(p, int64(off))
		if err != nil && !errors.Is(err, io.EOF) {
			return n, false, backend.Attr{}, false, fmt.Errorf("local read %q at %d: %w", obj.path, off, mapErr(err))
		}
	}
	fi, err := e.f.Stat()
	if err != nil {
		return n, false, backend.Attr{}, false, fmt.Errorf("local read %q: %w", obj.path, mapErr(err))
	}
	a := attrOf(stOf(fi))
	return n, off+uint64(n) >= a.SizeBytes, a, true, nil
}

// Write implements backend.Origin.
func (o *Origin) Write(ctx context.Context, _ backend.Cred, h backend.Handle, p []byte, off uint64, stable backend.Stability) (backend.Stability, backend.Attr, error) {
	e, obj, err := o.open(ctx, h, true)
	if err != nil {
		return 0, backend.Attr{}, fmt.Errorf("local write at %d: %w", off, err)
	}
	defer o.fds.release(e)
	if off > 1<<62 || uint64(len(p)) > 1<<62-off {
		return 0, backend.Attr{}, fmt.Errorf("local write %q at %d: %w", obj.path, off, backend.ErrFileTooBig)
	}
	if _, err := e.f.WriteAt(p, int64(off)); err != nil {
		return 0, backend.Attr{}, fmt.Errorf("local write %q at %d: %w", obj.path, off, mapErr(err))
	}
	switch stable {
	case backend.FileSync:
		err = e.f.Sync()
	case backend.DataSync:
		err = fdatasync(e.f)
	}
	if err != nil {
		return 0, backend.Attr{}, fmt.Errorf("local write %q: sync: %w", obj.path, mapErr(err))
	}
	a, err := fstatAttr(e.f)
	if err != nil {
		return 0, backend.Attr{}, fmt.Errorf("local write %q: %w", obj.path, err)
	}
	return stable, a, nil
}

func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}

func fstatAttr(f *os.File) (backend.Attr, error) {
	fi, err := f.Stat()
	if err != nil {
		return backend.Attr{}, mapErr(err)
	}
	return attrOf(stOf(fi)), nil
}

// Commit implements backend.Origin. fsync of any descriptor of the inode
// flushes every earlier write to it.
func (o *Origin) Commit(ctx context.Context, _ backend.Cred, h backend.Handle) (backend.Attr, error) {
	e, obj, err := o.open(ctx, h, false)
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local commit: %w", err)
	}
	defer o.fds.release(e)
	if err := e.f.Sync(); err != nil {
		return backend.Attr{}, fmt.Errorf("local commit %q: %w", obj.path, mapErr(err))
	}
	a, err := fstatAttr(e.f)
	if err != nil {
		return backend.Attr{}, fmt.Errorf("local commit %q: %w", obj.path, err)
	}
	return a, nil
}

// verifierTimes are the atime and mtime an exclusive create stores its
// verifier in, as knfsd does. Like knfsd, only 31 bits of each half are
// kept: a file system without 64-bit times (XFS without bigtime, ext4
// with 128-byte inodes) clamps a later second, so a retry would no
// longer match and fail with EEXIST.
func verifierTimes(v [8]byte) (atime, mtime unix.Timespec) {
	return unix.Timespec{Sec: int64(binary.BigEndian.Uint32(v[0:4]) & 0x7fffffff)},
		unix.Timespec{Sec: int64(binary.BigEndian.Uint32(v[4:8]) & 0x7fffffff)}
}

func verifierMatches(a backend.Attr, v [8]byte) bool {
	at, mt := verifierTimes(v)
	return a.Type == backend.TypeRegular && a.SizeBytes == 0 &&
		a.Atime.Unix() == at.Sec && a.Atime.Nanosecond() == 0 &&
		a.Mtime.Unix() == mt.Sec && a.Mtime.Nanosecond() == 0
}
