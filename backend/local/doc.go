// Package local serves a local directory as a backend.Origin.
//
// # Confinement
//
// The directory is opened as an os.Root; every path goes through it, so
// neither ".." nor a symlink (planted by anyone, at any time) leads
// outside. What os.Root lacks (mknod, lutimes, statfs, renameat, unlinkat)
// is done with *at system calls on a directory descriptor opened through
// the Root, with a single-component name and AT_SYMLINK_NOFOLLOW (or
// O_NOFOLLOW) wherever the call would follow a final symlink.
//
// # Handles
//
// A handle is version | st_ino | relative path (see handle.go). Every use
// re-checks that the path names that inode; otherwise the call fails with
// backend.ErrStale and the caller re-resolves the object by name. Handles
// of objects under a renamed directory therefore go stale, by design.
//
// # Ownership and modes
//
// The process runs as root. New objects are chowned to the caller's uid
// and gid, or to the parent's gid when the parent is setgid; new
// directories in a setgid directory are setgid, as Linux does. Modes are
// set explicitly after creation, so the process umask plays no part.
// EXCLUSIVE creates store the 8-byte verifier in atime/mtime (seconds), as
// knfsd does, and recognise a retry by it.
//
// # Durability
//
// Write with DataSync or FileSync calls fdatasync or fsync before it
// returns; Unstable does not; Commit fsyncs the file.
//
// # Concurrency
//
// All methods are safe for concurrent use. A bounded LRU cache of open
// descriptors (fdcache.go; one mutex, no lock order to keep) lets a
// stream of reads and writes to one file reuse one descriptor; entries are
// reference counted so eviction never closes a descriptor in use. For a
// file whose descriptor is cached, GetAttr, Read, Write and Commit check
// the handle with an fstat of the descriptor and one fstatat of the path
// instead of walking the path through the Root (Origin.cached).
package local
