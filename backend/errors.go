package backend

import (
	"errors"
	"syscall"
)

// Sentinels every Origin error matches (errors.Is). nfsserver maps them to
// NFS3ERR_* in one place; nothing compares error text.
var (
	ErrNotExist     = errors.New("backend: no such file or directory")
	ErrExist        = errors.New("backend: file exists")
	ErrNotDir       = errors.New("backend: not a directory")
	ErrIsDir        = errors.New("backend: is a directory")
	ErrNotEmpty     = errors.New("backend: directory not empty")
	ErrAccess       = errors.New("backend: permission denied")
	ErrPerm         = errors.New("backend: operation not permitted")
	ErrStale        = errors.New("backend: stale handle")
	ErrBadHandle    = errors.New("backend: malformed handle")
	ErrNameTooLong  = errors.New("backend: name too long")
	ErrNoSpace      = errors.New("backend: no space left on device")
	ErrDquot        = errors.New("backend: quota exceeded")
	ErrReadOnly     = errors.New("backend: read-only file system")
	ErrInvalid      = errors.New("backend: invalid argument")
	ErrNotSupported = errors.New("backend: operation not supported")
	ErrFileTooBig   = errors.New("backend: file too large")
	ErrXDev         = errors.New("backend: cross-device link")
	ErrMlink        = errors.New("backend: too many links")
	ErrNotSync      = errors.New("backend: attribute guard mismatch")
	ErrIO           = errors.New("backend: i/o error")
	// ErrUnavailable means the origin cannot be reached or asked the
	// caller to come back later; it is the only retryable class.
	ErrUnavailable = errors.New("backend: origin unavailable")
)

// IsRetryable reports whether err may go away if the same call is made
// again later (the origin is down or busy). Everything else is permanent.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrUnavailable)
}

// FromErrno returns the sentinel for a POSIX errno, for origins that sit on
// a POSIX file system. Unknown errnos become ErrIO.
func FromErrno(e syscall.Errno) error {
	switch e {
	case syscall.ENOENT:
		return ErrNotExist
	case syscall.EEXIST:
		return ErrExist
	case syscall.ENOTDIR, syscall.ELOOP:
		return ErrNotDir
	case syscall.EISDIR:
		return ErrIsDir
	case syscall.ENOTEMPTY:
		return ErrNotEmpty
	case syscall.EACCES:
		return ErrAccess
	case syscall.EPERM:
		return ErrPerm
	case syscall.ESTALE:
		return ErrStale
	case syscall.ENAMETOOLONG:
		return ErrNameTooLong
	case syscall.ENOSPC:
		return ErrNoSpace
	case syscall.EDQUOT:
		return ErrDquot
	case syscall.EROFS:
		return ErrReadOnly
	case syscall.EINVAL:
		return ErrInvalid
	case syscall.ENOTSUP, syscall.ENOSYS:
		return ErrNotSupported
	case syscall.EFBIG:
		return ErrFileTooBig
	case syscall.EXDEV:
		return ErrXDev
	case syscall.EMLINK:
		return ErrMlink
	case syscall.EAGAIN, syscall.EBUSY:
		return ErrUnavailable
	}
	return ErrIO
}
