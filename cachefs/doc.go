// Package cachefs is the file system nfsserver serves: inode-based
// operations on NodeIDs, mapped through meta to objects of each export's
// backend.Origin.
//
// File data is cached in chunks in a chunkstore.Store (data.go): named by
// (inode, origin version, index), fetched once per chunk however many
// readers wait (internal/flight), read ahead on sequential access, loaded
// ahead of time and pinned by Warm (warm.go). Attributes, lookups
// (negative ones too) and listing snapshots are trusted per export's
// Consistency (fresh.go), kept in memory and in meta (written behind by
// persist.go, read on a memory miss), so a restart keeps them. Writes still go through to the origin; write-back
// of a later issue plugs in at write.go (writeData, commitData). readData
// (read.go) is the only place file data is fetched.
//
// # Invariants
//
//   - A NodeID is served only if its export is configured and its inode
//     exists in meta with that export and generation; otherwise ErrStale.
//   - Attr.FileID is the nascache inode number; Attr.FSID is derived from
//     the export id, so it is distinct per export and stable.
//   - ".." of an export root is the root: no lookup leaves an export, and
//     origins never see "." or "..".
//   - Permission checks are made here, from mode bits and AUTH_SYS
//     credentials (perm.go), before anything reaches the origin, because a
//     local origin runs as root and checks nothing.
//   - An origin handle that went stale (a local origin's path moved,
//     through nascache or behind its back) is re-resolved from the parent
//     chain in meta (parent handle + Lookup of the recorded name, same
//     FileID required; when that name is gone or names another object,
//     the parent directory is searched for the FileID, which finds a
//     surviving hard link in the same directory), meta is updated, and
//     the call is retried once.
//   - Removing the last name of an object forgets its inode, so its
//     NodeIDs turn stale; inode numbers are never reused.
//
// # Directory listings
//
// ReadDir serves snapshots: on cookie 0, or a verifier no longer cached,
// the directory is read from the origin once, sorted by name, all entries
// mapped to inodes in batched meta transactions, and kept in a bounded
// cache under a new verifier. Cookie i+1 resumes after entry i, so paging
// through n entries costs O(n), and an evicted snapshot is rebuilt and
// continued by position instead of failing the listing. Every snapshot
// starts with "." and ".." (cookies 1 and 2). Names and cookies come from
// the snapshot; attributes are the origin's current ones on every page
// after the one that built it (a client takes READDIRPLUS attributes as
// its newest, so old ones would roll back what it saw since).
//
//   - A READ takes the file's attributes once and names every chunk it uses
//     by the version derived from them: it never mixes versions. A chunk is
//     stored only when the origin still has that version after the fetch.
//   - Hits write nothing to meta or bbolt.
//
// # Concurrency
//
// All methods are safe for concurrent use. The FS owns goroutines: the
// meta writer (persist.go; running while answers wait to be written) and,
// with a data cache, chunk fetches (one per chunk in flight) and
// read-ahead; Close stops them and waits (the writer after writing what
// is queued). The inode cache, the listing cache, the
// freshness cache and the data cache's tables each have their own mutex
// guarding their maps, never held across a call to meta, the store or an
// origin, and never held together, so there is no lock order to keep. meta serialises its own
// writers; two callers mapping the same object agree on its inode.
package cachefs
