package nfsserver

import (
	"context"
	"time"

	"github.com/nascache/nascache/cachefs"
)

// FS is the file system the server serves; *cachefs.FS implements it. Every
// error an FS returns is mapped to an NFS3ERR_* status by nfsStatus in
// errors.go, the one place that does it.
type FS interface {
	// Root returns the root directory of an export (for MNT).
	Root(ctx context.Context, export uint16) (cachefs.NodeID, cachefs.Attr, error)
	GetAttr(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.Attr, error)
	SetAttr(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID, sa cachefs.SetAttr, guardCtime *time.Time) (cachefs.WCC, error)
	// Lookup resolves name in dir; "." and ".." are handled (".." of an
	// export root is the root itself).
	Lookup(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.NodeID, cachefs.Attr, cachefs.Attr, error)
	// Access returns which of the requested cachefs.Access* bits cred has.
	Access(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID, want uint32) (uint32, cachefs.Attr, error)
	ReadLink(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID) (string, cachefs.Attr, error)
	Read(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID, off uint64, count uint32) (cachefs.ReadResult, error)
	Write(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID, off uint64, data []byte, stable cachefs.Stability) (cachefs.WriteResult, error)
	Commit(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.WCC, error)
	Create(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string, args cachefs.CreateArgs) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error)
	Mkdir(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string, sa cachefs.SetAttr) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error)
	Symlink(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name, target string, sa cachefs.SetAttr) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error)
	Mknod(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string, t cachefs.FileType, sa cachefs.SetAttr, major, minor uint32) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error)
	Remove(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.WCC, error)
	Rmdir(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.WCC, error)
	Rename(ctx context.Context, cred cachefs.Cred, fromDir cachefs.NodeID, fromName string, toDir cachefs.NodeID, toName string) (cachefs.WCC, cachefs.WCC, error)
	Link(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID, dir cachefs.NodeID, name string) (cachefs.Attr, cachefs.WCC, error)
	// ReadDir lists dir from cookie (0 = start) and calls fn for each
	// entry in order until fn returns false (the reply is full; that
	// entry is not sent) or the listing ends (EOF). Cookies are stable
	// for the listing named by the returned verifier; a listing of n
	// entries read in pages costs O(n) in total.
	ReadDir(ctx context.Context, cred cachefs.Cred, dir cachefs.NodeID, cookie, verifier uint64, fn func(cachefs.DirEntry) bool) (cachefs.ReadDirResult, error)
	FSStat(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.FSStat, cachefs.Attr, error)
	PathConf(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.PathConf, cachefs.Attr, error)
}
