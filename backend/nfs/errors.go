package nfs

import (
	"context"
	"errors"
	"fmt"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// Sentinels of this package; every error an Origin method returns also
// matches one of backend's sentinels.
var (
	// ErrBadURL is returned by ParseURL for an origin URL it cannot use.
	ErrBadURL = errors.New("nfs: bad origin URL")
	// ErrMount is returned by New when the server refuses to mount the
	// export (the MountError says why).
	ErrMount = errors.New("nfs: mount refused")
	// ErrNotMounted is returned (matching backend.ErrUnavailable) by
	// calls to an Origin made by Open before its export is mounted.
	ErrNotMounted = errors.New("nfs: origin not mounted yet")
)

// StatusError is an NFSv3 status other than NFS3_OK. It unwraps to the
// backend sentinel of its class, so errors.Is(err, backend.ErrNotExist)
// works, and errors.As gives callers the exact status.
type StatusError struct {
	Status nfsv3.Nfsstat3
}

func (e *StatusError) Error() string {
	name, ok := nfsv3.Nfsstat3_name[e.Status]
	if !ok {
		name = fmt.Sprintf("nfsstat3 %d", int32(e.Status))
	}
	return name
}

// Unwrap returns the backend sentinel for the status.
func (e *StatusError) Unwrap() error { return statusSentinel(e.Status) }

func statusSentinel(s nfsv3.Nfsstat3) error {
	switch s {
	case nfsv3.NFS3ERR_PERM:
		return backend.ErrPerm
	case nfsv3.NFS3ERR_NOENT, nfsv3.NFS3ERR_NXIO:
		return backend.ErrNotExist
	case nfsv3.NFS3ERR_ACCES:
		return backend.ErrAccess
	case nfsv3.NFS3ERR_EXIST:
		return backend.ErrExist
	case nfsv3.NFS3ERR_XDEV:
		return backend.ErrXDev
	case nfsv3.NFS3ERR_NOTDIR:
		return backend.ErrNotDir
	case nfsv3.NFS3ERR_ISDIR:
		return backend.ErrIsDir
	case nfsv3.NFS3ERR_INVAL, nfsv3.NFS3ERR_TOOSMALL:
		return backend.ErrInvalid
	case nfsv3.NFS3ERR_FBIG:
		return backend.ErrFileTooBig
	case nfsv3.NFS3ERR_NOSPC:
		return backend.ErrNoSpace
	case nfsv3.NFS3ERR_ROFS:
		return backend.ErrReadOnly
	case nfsv3.NFS3ERR_MLINK:
		return backend.ErrMlink
	case nfsv3.NFS3ERR_NAMETOOLONG:
		return backend.ErrNameTooLong
	case nfsv3.NFS3ERR_NOTEMPTY:
		return backend.ErrNotEmpty
	case nfsv3.NFS3ERR_DQUOT:
		return backend.ErrDquot
	case nfsv3.NFS3ERR_STALE, nfsv3.NFS3ERR_BAD_COOKIE:
		return backend.ErrStale
	case nfsv3.NFS3ERR_BADHANDLE:
		return backend.ErrBadHandle
	case nfsv3.NFS3ERR_NOT_SYNC:
		return backend.ErrNotSync
	case nfsv3.NFS3ERR_NOTSUPP, nfsv3.NFS3ERR_NODEV, nfsv3.NFS3ERR_REMOTE, nfsv3.NFS3ERR_BADTYPE:
		return backend.ErrNotSupported
	case nfsv3.NFS3ERR_JUKEBOX:
		return backend.ErrUnavailable
	}
	return backend.ErrIO // NFS3ERR_IO, NFS3ERR_SERVERFAULT and unknown ones
}

// MountError is a MOUNT v3 status other than MNT3_OK; it matches ErrMount.
type MountError struct {
	Export string
	Status uint32
}

func (e *MountError) Error() string {
	return fmt.Sprintf("%v: export %q: mountstat3 %d", ErrMount, e.Export, e.Status)
}

func (e *MountError) Unwrap() error { return ErrMount }

// classify returns the backend sentinel an RPC-level error belongs to.
func classify(err error) error {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return nil // already unwraps to its sentinel
	case oncrpc.IsRetryable(err):
		return backend.ErrUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The origin did not answer in time (or the caller gave up):
		// trying later may work.
		return backend.ErrUnavailable
	case errors.Is(err, oncrpc.ErrAuth):
		return backend.ErrAccess
	case errors.Is(err, oncrpc.ErrProgUnavail), errors.Is(err, oncrpc.ErrProgMismatch),
		errors.Is(err, oncrpc.ErrProcUnavail), errors.Is(err, oncrpc.ErrRPCMismatch):
		return backend.ErrNotSupported
	case errors.Is(err, oncrpc.ErrGarbageArgs), errors.Is(err, oncrpc.ErrArgsTooLarge):
		return backend.ErrInvalid
	case errors.Is(err, backend.ErrInvalid), errors.Is(err, backend.ErrBadHandle):
		return nil
	}
	return backend.ErrIO
}

// wrap names the operation and makes err match a backend sentinel.
func wrap(op string, err error) error {
	if s := classify(err); s != nil {
		return fmt.Errorf("nfs %s: %w: %w", op, s, err)
	}
	return fmt.Errorf("nfs %s: %w", op, err)
}
