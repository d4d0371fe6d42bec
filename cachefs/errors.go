package cachefs

import (
	"errors"

	"github.com/nascache/nascache/backend"
)

// Errors of cachefs. Origin errors pass through wrapped and still match the
// backend sentinels re-exported here, so nfsserver needs only this package.
var (
	// ErrStale: the NodeID names no live object of its export.
	ErrStale = errors.New("cachefs: stale node")
	// ErrJukebox: try again later (origin down, write-back over limit).
	ErrJukebox = errors.New("cachefs: busy, retry later")

	ErrNotExist     = backend.ErrNotExist
	ErrExist        = backend.ErrExist
	ErrNotDir       = backend.ErrNotDir
	ErrIsDir        = backend.ErrIsDir
	ErrNotEmpty     = backend.ErrNotEmpty
	ErrAccess       = backend.ErrAccess
	ErrPerm         = backend.ErrPerm
	ErrNameTooLong  = backend.ErrNameTooLong
	ErrNoSpace      = backend.ErrNoSpace
	ErrDquot        = backend.ErrDquot
	ErrReadOnly     = backend.ErrReadOnly
	ErrInvalid      = backend.ErrInvalid
	ErrNotSupported = backend.ErrNotSupported
	ErrFileTooBig   = backend.ErrFileTooBig
	ErrXDev         = backend.ErrXDev
	ErrMlink        = backend.ErrMlink
	ErrNotSync      = backend.ErrNotSync
	ErrIO           = backend.ErrIO
	ErrUnavailable  = backend.ErrUnavailable
	ErrBadHandle    = backend.ErrBadHandle
)

// errVersionChanged: the origin file changed while a READ was served from
// it; the READ starts over with fresh attributes.
var errVersionChanged = errors.New("cachefs: origin file changed during read")
