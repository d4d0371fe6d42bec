package cachefs

import (
	"time"

	"github.com/nascache/nascache/backend"
)

// Types shared with the protocol front end. Enums are aliases of the
// backend's so that no conversion tables are needed; nfsserver uses them
// through this package and never imports backend.
type (
	FileType   = backend.FileType
	Cred       = backend.Cred
	SetAttr    = backend.SetAttr
	SetTime    = backend.SetTime
	Stability  = backend.Stability
	CreateArgs = backend.CreateArgs
	CreateMode = backend.CreateMode
	FSStat     = backend.FSStat
	PathConf   = backend.PathConf
)

// Re-exported enum values.
const (
	TypeRegular   = backend.TypeRegular
	TypeDirectory = backend.TypeDirectory
	TypeBlock     = backend.TypeBlock
	TypeChar      = backend.TypeChar
	TypeSymlink   = backend.TypeSymlink
	TypeSocket    = backend.TypeSocket
	TypeFIFO      = backend.TypeFIFO

	TimeDontChange = backend.TimeDontChange
	TimeServer     = backend.TimeServer
	TimeClient     = backend.TimeClient

	Unstable = backend.Unstable
	DataSync = backend.DataSync
	FileSync = backend.FileSync

	CreateUnchecked = backend.CreateUnchecked
	CreateGuarded   = backend.CreateGuarded
	CreateExclusive = backend.CreateExclusive
)

// Access bits, with the values of NFSv3's ACCESS3_*.
const (
	AccessRead    uint32 = 0x01
	AccessLookup  uint32 = 0x02
	AccessModify  uint32 = 0x04
	AccessExtend  uint32 = 0x08
	AccessDelete  uint32 = 0x10
	AccessExecute uint32 = 0x20
)

// NodeID names one object served by nascache: the export it belongs to,
// its nascache inode number and the generation of that inode record. It is
// what a file handle carries. Operations reject a NodeID whose inode does
// not exist, belongs to another export, or has another generation, with an
// error matching ErrStale.
type NodeID struct {
	Export uint16
	Ino    uint64
	Gen    uint32
}

// Attr are the attributes nascache serves for an object. FileID is the
// nascache inode number (not the origin's), FSID identifies the export.
type Attr struct {
	Type      FileType
	Mode      uint32 // permission bits plus setuid, setgid, sticky (07777)
	Nlink     uint32
	UID       uint32
	GID       uint32
	SizeBytes uint64
	UsedBytes uint64
	RdevMajor uint32
	RdevMinor uint32
	FSID      uint64
	FileID    uint64
	Atime     time.Time
	Mtime     time.Time
	Ctime     time.Time
}

// PreAttr are the attributes a client uses for weak cache consistency
// before an operation (wcc_attr).
type PreAttr struct {
	SizeBytes uint64
	Mtime     time.Time
	Ctime     time.Time
}

// WCC is the weak cache consistency data of an object an operation changed.
// Either pointer may be nil when nascache does not know the value.
type WCC struct {
	Before *PreAttr
	After  *Attr
}

// DirEntry is one entry returned by ReadDir. Cookie resumes the listing
// right after this entry.
type DirEntry struct {
	Name   string
	Cookie uint64
	Node   NodeID
	Attr   Attr
}

// ReadResult is what Read returns.
type ReadResult struct {
	Data []byte
	EOF  bool
	Attr Attr
	// Release, when not nil, hands Data's buffer back for reuse. The
	// caller calls it at most once, after its last use of Data; Data
	// does not change until then. Not calling it is safe (the buffer is
	// then garbage collected).
	Release func()
}

// WriteResult is what Write returns.
type WriteResult struct {
	Count     uint32
	Committed Stability
	WCC       WCC
}

// ReadDirResult is what ReadDir returns besides the entries.
type ReadDirResult struct {
	// Verifier identifies the listing the cookies belong to.
	Verifier uint64
	EOF      bool
	DirAttr  Attr
}
