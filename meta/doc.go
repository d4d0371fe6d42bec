// Package meta is nascache's metadata database, on go.etcd.io/bbolt. It is
// the only package that opens the database file.
//
// It holds the handle MAC key, the export ids and the inode table: every
// object nascache serves gets a 64-bit inode number from a persistent
// counter (never reused, even after Forget) and a random, non-zero 32-bit
// generation, kept with the export id, type, parent inode, name, origin
// handle and origin FileID. The index (export, origin FileID) -> inode
// makes every name of one origin object (hard links) map to one inode.
//
// It also holds the freshness tier (fresh.go): the origin's answers about
// attributes, LOOKUPs (negative ones too) and complete directory
// listings, each stamped with its export's generation and the wall-clock
// time it was asked, so that a restart keeps them. cachefs decides whether
// a stamp is still good; meta keeps the generations honest across restarts
// and crashes (the argument is at the top of fresh.go).
//
// # Invariants
//
//   - Every value is a record: kind, version, payload, CRC32C. A record
//     that fails its check is reported as ErrCorrupt and never used.
//   - The counter and the records it numbers change in one transaction,
//     so a crash never hands an inode number out twice.
//   - Every write is a bbolt transaction (fsynced unless Options.NoSync),
//     so a crash leaves the database as of the last commit.
//   - Values read in a transaction are copied before it ends.
//
// # Concurrency
//
// All methods are safe for concurrent use. Readers (Get, Attr, Lookup,
// Listing, and Map of known entries) run in parallel in read transactions;
// writers are serialised by bbolt. Map re-checks inside its write
// transaction, so two callers mapping the same object agree on its inode;
// concurrent Maps share a commit (bolt's Batch). The gens mutex (export
// generations) is a leaf, taken inside transactions, never around one.
//
// # On-disk format
//
//	bucket "config"
//	  "schema"     -> record(kindSchema,   u64 schema version = 2)
//	  "clean"      -> record(kindClean,    empty): present only while closed cleanly
//	  "handlekey"  -> record(kindHandleKey, 32 random bytes)
//	  "nextino"    -> record(kindCounter,  u64 next inode number, from 1)
//	  "nextexport" -> record(kindCounter,  u64 next export id, from 1)
//	bucket "exports"  export path         -> record(kindExportID, u64 id)
//	bucket "roots"    u16 export id (BE)  -> record(kindIndex, u64 ino)
//	bucket "fileids"  u16 export | u64 origin FileID (BE) -> record(kindIndex, u64 ino)
//	bucket "inodes"   u64 ino (BE)        -> record(kindInode, inode payload)
//	bucket "pins"     u64 ino (BE)        -> record(kindPin, empty payload)
//	bucket "gens"     u16 export id (BE)  -> record(kindGen, u64 generation)
//	bucket "attrs"    u64 ino (BE)        -> record(kindAttr, stamp | attributes)
//	bucket "lookups"  u64 dir ino | name  -> record(kindLookup, stamp | u64 ino, 0: absent)
//	bucket "listings" u64 dir ino         -> record(kindListing, stamp | u64 entry count)
//	bucket "listed"   u64 dir ino | name  -> record(kindListed, u64 ino)
//	bucket "modes"    u16 export id (BE)  -> record(kindMode, consistency mode as text)
//
// A listing is its header plus a prefix scan of "listed" over the
// directory's inode, which yields the names in byte order; it is used
// only when the count matches. The payloads are drawn in fresh.go.
// Version 1 of the schema lacked the last six buckets; Open adds them.
//
// The pins bucket lists the inodes whose cached data is pinned (nascache
// warm --pin); cachefs re-applies the pins to the chunk store at start.
// It was added without a schema change: an older build ignores it.
//
//	record:  +------+-----+------------------+----------------------+
//	         | kind | ver | payload          | CRC32C(kind|ver|payload) |
//	         | u8   | u8  |                  | u32 BE               |
//	         +------+-----+------------------+----------------------+
//
//	inode payload (version 1), integers big endian:
//	  +-----+--------+------+--------+--------+---------+------+-----------+--------+
//	  | gen | export | type | parent | fileid | namelen | name | handlelen | handle |
//	  | u32 | u16    | u8   | u64    | u64    | u16     |      | u16       |        |
//	  +-----+--------+------+--------+--------+---------+------+-----------+--------+
package meta
