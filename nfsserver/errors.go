package nfsserver

import (
	"errors"
	"strconv"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/nascache/nascache/cachefs"
)

// Errors of nfsserver.
var (
	// ErrInvalidConfig: a Config field is wrong (Validate).
	ErrInvalidConfig = errors.New("nfsserver: invalid config")
	// ErrBadHandle: a file handle is malformed, of another version, or
	// its MAC does not match.
	ErrBadHandle = errors.New("nfsserver: bad file handle")
	// ErrRecordTooLarge: a client sent an RPC record over the size limit.
	ErrRecordTooLarge = errors.New("nfsserver: rpc record too large")
	// ErrClientRefused: the client's address is outside the networks an
	// export admits. Reported as NFS3ERR_STALE, as Linux knfsd does (see
	// doc.go).
	ErrClientRefused = errors.New("nfsserver: client not admitted by export")
	// ErrNotListening: Run was called before Listen.
	ErrNotListening = errors.New("nfsserver: not listening")
)

// StatusError is an error with the NFSv3 status it is reported as. It
// unwraps to its cause.
type StatusError struct {
	Status nfsv3.Nfsstat3
	Err    error
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return "nfsserver: " + statusName(e.Status)
	}
	return statusName(e.Status) + ": " + e.Err.Error()
}

func (e *StatusError) Unwrap() error { return e.Err }

// statusErr returns a *StatusError for st wrapping err.
func statusErr(st nfsv3.Nfsstat3, err error) error {
	return &StatusError{Status: st, Err: err}
}

// errorStatuses maps the sentinels to statuses; order matters only where an
// error could match several (a StatusError is checked first).
var errorStatuses = [...]struct {
	err    error
	status nfsv3.Nfsstat3
}{
	{ErrBadHandle, nfsv3.NFS3ERR_BADHANDLE},
	{ErrClientRefused, nfsv3.NFS3ERR_STALE},
	{cachefs.ErrBadHandle, nfsv3.NFS3ERR_BADHANDLE},
	{cachefs.ErrStale, nfsv3.NFS3ERR_STALE},
	{cachefs.ErrJukebox, nfsv3.NFS3ERR_JUKEBOX},
	{cachefs.ErrUnavailable, nfsv3.NFS3ERR_JUKEBOX},
	{cachefs.ErrNotExist, nfsv3.NFS3ERR_NOENT},
	{cachefs.ErrExist, nfsv3.NFS3ERR_EXIST},
	{cachefs.ErrNotDir, nfsv3.NFS3ERR_NOTDIR},
	{cachefs.ErrIsDir, nfsv3.NFS3ERR_ISDIR},
	{cachefs.ErrNotEmpty, nfsv3.NFS3ERR_NOTEMPTY},
	{cachefs.ErrAccess, nfsv3.NFS3ERR_ACCES},
	{cachefs.ErrPerm, nfsv3.NFS3ERR_PERM},
	{cachefs.ErrNameTooLong, nfsv3.NFS3ERR_NAMETOOLONG},
	{cachefs.ErrNoSpace, nfsv3.NFS3ERR_NOSPC},
	{cachefs.ErrDquot, nfsv3.NFS3ERR_DQUOT},
	{cachefs.ErrReadOnly, nfsv3.NFS3ERR_ROFS},
	{cachefs.ErrInvalid, nfsv3.NFS3ERR_INVAL},
	{cachefs.ErrNotSupported, nfsv3.NFS3ERR_NOTSUPP},
	{cachefs.ErrFileTooBig, nfsv3.NFS3ERR_FBIG},
	{cachefs.ErrXDev, nfsv3.NFS3ERR_XDEV},
	{cachefs.ErrMlink, nfsv3.NFS3ERR_MLINK},
	{cachefs.ErrNotSync, nfsv3.NFS3ERR_NOT_SYNC},
	{cachefs.ErrIO, nfsv3.NFS3ERR_IO},
}

// nfsStatus is the one place that turns an error into an NFSv3 status.
// known is false for an error matching no sentinel (reported as
// NFS3ERR_IO); the caller logs those.
func nfsStatus(err error) (st nfsv3.Nfsstat3, known bool) {
	if err == nil {
		return nfsv3.NFS3_OK, true
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status, true
	}
	for _, m := range errorStatuses {
		if errors.Is(err, m.err) {
			return m.status, true
		}
	}
	return nfsv3.NFS3ERR_IO, false
}

var statusNames = map[nfsv3.Nfsstat3]string{
	nfsv3.NFS3_OK:             "NFS3_OK",
	nfsv3.NFS3ERR_PERM:        "NFS3ERR_PERM",
	nfsv3.NFS3ERR_NOENT:       "NFS3ERR_NOENT",
	nfsv3.NFS3ERR_IO:          "NFS3ERR_IO",
	nfsv3.NFS3ERR_NXIO:        "NFS3ERR_NXIO",
	nfsv3.NFS3ERR_ACCES:       "NFS3ERR_ACCES",
	nfsv3.NFS3ERR_EXIST:       "NFS3ERR_EXIST",
	nfsv3.NFS3ERR_XDEV:        "NFS3ERR_XDEV",
	nfsv3.NFS3ERR_NODEV:       "NFS3ERR_NODEV",
	nfsv3.NFS3ERR_NOTDIR:      "NFS3ERR_NOTDIR",
	nfsv3.NFS3ERR_ISDIR:       "NFS3ERR_ISDIR",
	nfsv3.NFS3ERR_INVAL:       "NFS3ERR_INVAL",
	nfsv3.NFS3ERR_FBIG:        "NFS3ERR_FBIG",
	nfsv3.NFS3ERR_NOSPC:       "NFS3ERR_NOSPC",
	nfsv3.NFS3ERR_ROFS:        "NFS3ERR_ROFS",
	nfsv3.NFS3ERR_MLINK:       "NFS3ERR_MLINK",
	nfsv3.NFS3ERR_NAMETOOLONG: "NFS3ERR_NAMETOOLONG",
	nfsv3.NFS3ERR_NOTEMPTY:    "NFS3ERR_NOTEMPTY",
	nfsv3.NFS3ERR_DQUOT:       "NFS3ERR_DQUOT",
	nfsv3.NFS3ERR_STALE:       "NFS3ERR_STALE",
	nfsv3.NFS3ERR_REMOTE:      "NFS3ERR_REMOTE",
	nfsv3.NFS3ERR_BADHANDLE:   "NFS3ERR_BADHANDLE",
	nfsv3.NFS3ERR_NOT_SYNC:    "NFS3ERR_NOT_SYNC",
	nfsv3.NFS3ERR_BAD_COOKIE:  "NFS3ERR_BAD_COOKIE",
	nfsv3.NFS3ERR_NOTSUPP:     "NFS3ERR_NOTSUPP",
	nfsv3.NFS3ERR_TOOSMALL:    "NFS3ERR_TOOSMALL",
	nfsv3.NFS3ERR_SERVERFAULT: "NFS3ERR_SERVERFAULT",
	nfsv3.NFS3ERR_BADTYPE:     "NFS3ERR_BADTYPE",
	nfsv3.NFS3ERR_JUKEBOX:     "NFS3ERR_JUKEBOX",
}

// statusName is the RFC 1813 name of st, for logs and metric labels.
func statusName(st nfsv3.Nfsstat3) string {
	if n, ok := statusNames[st]; ok {
		return n
	}
	return "NFS3ERR_" + strconv.Itoa(int(st))
}
