// Package backend defines the Origin seam: the storage nascache caches in
// front of (a NAS export over NFSv3, an S3 bucket, a local directory).
//
// # Contract
//
// An Origin is handle based, like NFSv3. A Handle is an opaque byte string
// of at most MaxHandleBytes that names one object at the origin (an NFS
// origin's handles are at most 64 bytes; a local origin's carry a path). Handles are
// kept by callers (in meta) across restarts, so an implementation must make
// them stable for as long as the object exists. An implementation that
// cannot (a local directory, whose handles carry a path) returns an error
// matching ErrStale when a handle no longer names the object it was issued
// for; the caller then re-resolves the object by name from its parent and
// retries. A handle never reaches outside the origin's root.
//
// Attr.FileID is the origin's own stable number for an object (an inode
// number); two handles with the same FileID name the same object (hard
// links). Callers key their inode table on it.
//
// Every call carries the credentials of the client on whose behalf it is
// made. An origin that checks permissions itself (an NFS server) receives
// them on the wire; one that does not (a local directory served as root)
// uses them only to set the owner of new objects.
//
// Errors: every error returned matches (errors.Is) one of the sentinels in
// errors.go, so that callers map them without guessing; IsRetryable tells
// whether trying again later can succeed (origin unreachable, overloaded).
// A cancelled ctx aborts the call; a mutation whose ctx was cancelled may or
// may not have been applied, so mutations are written to be safe to retry
// (Create with a verifier, Remove that tolerates ErrNotExist on retry).
//
// All methods are safe for concurrent use. No method calls back into the
// caller except ReadDir's fn, which runs on the calling goroutine.
package backend

import (
	"context"
	"time"
)

// MaxHandleBytes is the largest Handle an origin may issue. Origin handles
// are stored in meta, never sent to clients, so they may exceed NFSv3's 64.
const MaxHandleBytes = 4096 + 64

// Handle names one object at an origin. It is opaque to callers.
type Handle []byte

// FileType is the type of an object.
type FileType uint8

// The object types of NFSv3 (ftype3), in the same order.
const (
	TypeRegular FileType = iota + 1
	TypeDirectory
	TypeBlock
	TypeChar
	TypeSymlink
	TypeSocket
	TypeFIFO
)

func (t FileType) String() string {
	switch t {
	case TypeRegular:
		return "file"
	case TypeDirectory:
		return "dir"
	case TypeBlock:
		return "block"
	case TypeChar:
		return "char"
	case TypeSymlink:
		return "symlink"
	case TypeSocket:
		return "socket"
	case TypeFIFO:
		return "fifo"
	}
	return "unknown"
}

// Attr are the attributes of an object as the origin has them.
type Attr struct {
	Type FileType
	// Mode holds the permission bits and setuid, setgid and sticky (07777).
	Mode  uint32
	Nlink uint32
	UID   uint32
	GID   uint32
	// SizeBytes is the logical size; UsedBytes what it occupies on disk.
	SizeBytes uint64
	UsedBytes uint64
	// RdevMajor and RdevMinor are set for block and character devices.
	RdevMajor uint32
	RdevMinor uint32
	// FSID identifies the origin file system the object lives on.
	FSID uint64
	// FileID is the origin's stable number for the object.
	FileID uint64
	Atime  time.Time
	Mtime  time.Time
	Ctime  time.Time
}

// SetTime says how to set one timestamp.
type SetTime uint8

const (
	// TimeDontChange leaves the timestamp alone.
	TimeDontChange SetTime = iota
	// TimeServer sets it to the origin's current time.
	TimeServer
	// TimeClient sets it to the given value.
	TimeClient
)

// SetAttr lists the attributes to change; nil pointers are left alone.
type SetAttr struct {
	Mode      *uint32
	UID       *uint32
	GID       *uint32
	SizeBytes *uint64
	Atime     SetTime
	AtimeVal  time.Time
	Mtime     SetTime
	MtimeVal  time.Time
}

// Cred are the AUTH_SYS credentials of the client a call is made for.
type Cred struct {
	UID  uint32
	GID  uint32
	GIDs []uint32
}

// Stability is how durable a write must be before it returns (stable_how).
type Stability uint8

const (
	// Unstable data may sit in the origin's memory until Commit.
	Unstable Stability = iota
	// DataSync data is on stable storage; metadata may lag.
	DataSync
	// FileSync data and metadata are on stable storage.
	FileSync
)

// CreateMode is how Create treats an existing name.
type CreateMode uint8

const (
	// CreateUnchecked succeeds on an existing regular file (applying
	// SetAttr's size, as NFSv3 UNCHECKED does).
	CreateUnchecked CreateMode = iota
	// CreateGuarded fails with ErrExist if the name exists.
	CreateGuarded
	// CreateExclusive uses Verifier to make a retried create succeed
	// exactly once: an existing file created with the same verifier is
	// returned, any other existing name fails with ErrExist.
	CreateExclusive
)

// CreateArgs describe a new regular file.
type CreateArgs struct {
	Mode     CreateMode
	Attr     SetAttr
	Verifier [8]byte
}

// DirEntry is one entry of a directory listing with its attributes.
type DirEntry struct {
	Name   string
	Handle Handle
	Attr   Attr
}

// FSStat are the capacity figures of the file system holding an object.
type FSStat struct {
	TotalBytes uint64
	FreeBytes  uint64
	AvailBytes uint64
	TotalFiles uint64
	FreeFiles  uint64
	AvailFiles uint64
}

// PathConf are the POSIX limits of the file system holding an object.
type PathConf struct {
	LinkMax         uint32
	NameMax         uint32
	NoTrunc         bool
	ChownRestricted bool
	CaseInsensitive bool
	CasePreserving  bool
}

// Properties describe what an origin can and cannot do, so callers adapt
// instead of guessing from the type.
type Properties struct {
	// Name is a short human name for logs ("local", "nfs", "s3").
	Name string
	// AtomicRename is true when Rename replaces the target atomically.
	AtomicRename bool
	// HardLinks, Symlinks and SpecialFiles tell which object kinds exist.
	HardLinks    bool
	Symlinks     bool
	SpecialFiles bool
	// MaxConcurrency is how many calls the origin handles well at once.
	MaxConcurrency int
}

// Origin is the storage an export caches. See the package doc for the
// contract every implementation keeps.
type Origin interface {
	// Root returns the handle and attributes of the origin's root
	// directory.
	Root(ctx context.Context) (Handle, Attr, error)
	GetAttr(ctx context.Context, cred Cred, h Handle) (Attr, error)
	// SetAttr applies sa. With a non-nil guardCtime it fails with
	// ErrNotSync unless the object's ctime equals *guardCtime.
	SetAttr(ctx context.Context, cred Cred, h Handle, sa SetAttr, guardCtime *time.Time) (Attr, error)
	Lookup(ctx context.Context, cred Cred, dir Handle, name string) (Handle, Attr, error)
	ReadLink(ctx context.Context, cred Cred, h Handle) (string, error)
	// Read fills p from offset off and reports how much it read and
	// whether the read reached the end of the file.
	Read(ctx context.Context, cred Cred, h Handle, p []byte, off uint64) (n int, eof bool, err error)
	// Write writes p at off with at least the requested stability and
	// returns the stability reached and the attributes after the write.
	Write(ctx context.Context, cred Cred, h Handle, p []byte, off uint64, stable Stability) (Stability, Attr, error)
	// Commit makes every earlier Unstable write to h durable.
	Commit(ctx context.Context, cred Cred, h Handle) (Attr, error)
	Create(ctx context.Context, cred Cred, dir Handle, name string, args CreateArgs) (Handle, Attr, error)
	Mkdir(ctx context.Context, cred Cred, dir Handle, name string, sa SetAttr) (Handle, Attr, error)
	Symlink(ctx context.Context, cred Cred, dir Handle, name, target string, sa SetAttr) (Handle, Attr, error)
	// Mknod makes a FIFO, socket or device node.
	Mknod(ctx context.Context, cred Cred, dir Handle, name string, t FileType, sa SetAttr, rdevMajor, rdevMinor uint32) (Handle, Attr, error)
	Link(ctx context.Context, cred Cred, h Handle, dir Handle, name string) (Attr, error)
	Remove(ctx context.Context, cred Cred, dir Handle, name string) error
	Rmdir(ctx context.Context, cred Cred, dir Handle, name string) error
	Rename(ctx context.Context, cred Cred, fromDir Handle, fromName string, toDir Handle, toName string) error
	// ReadDir calls fn for every entry of dir except "." and "..", in
	// an order that is stable while the directory does not change. It
	// stops early, returning nil, when fn returns false.
	ReadDir(ctx context.Context, cred Cred, dir Handle, fn func(DirEntry) bool) error
	FSStat(ctx context.Context, cred Cred, h Handle) (FSStat, error)
	PathConf(ctx context.Context, cred Cred, h Handle) (PathConf, error)
	Properties() Properties
	// Close releases the origin's resources; no call may follow.
	Close() error
}
