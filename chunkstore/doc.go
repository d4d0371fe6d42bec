// Package chunkstore keeps file data in chunks on local disk (SSD) under one
// directory, bounded by a capacity, with scan-resistant eviction, checksums
// verified on every read, crash-consistent writes and a warm restart.
//
// It is a leaf: it imports nothing of nascache. cachefs names each chunk by
// a Key (inode, origin version, chunk index) and decides the chunk size;
// the store keeps whatever bytes it is given under that key. Because the
// origin version is part of the key, bytes of an old version of a file can
// never be served for a new one; old chunks just stop being asked for and
// are evicted (or dropped at once with RemoveStale).
//
// # On disk
//
//	Dir/
//	  FORMAT            "nascache chunkstore 1\n" (written once, last, at creation)
//	  LOCK              flock(LOCK_EX) held while a Store is open
//	  tmp/              chunks being written; emptied by Open
//	  chunks/00 .. ff/  up to 256 fanout directories, made on first use;
//	                    fanout = (ino XOR index) & 0xff, two lower-case hex digits
//	    IIIIIIIIIIIIIIII-VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV-XXXXXXXXXXXXXXXX
//	                    inode (16 hex) - version (32 hex) - index (16 hex)
//
// A chunk file is a 64-byte header followed by the data. All integers are
// little-endian:
//
//	 0               4       6       8                              16
//	 +---------------+-------+-------+-------------------------------+
//	 | magic "NCHK"  |format |hdr len|            inode              |
//	 |               |  = 1  |  = 64 |           (uint64)            |
//	 +---------------+-------+-------+-------------------------------+
//	16                                                              32
//	 +---------------------------------------------------------------+
//	 |                     origin version (16 bytes)                 |
//	 +-------------------------------+---------------+---------------+
//	32                              40              44              48
//	 |         chunk index           |  data length  |  data CRC32C  |
//	 |          (uint64)             |   (uint32)    |   (uint32)    |
//	 +-------------------------------+---------------+---------------+
//	48                                              60              64
//	 |            reserved, must be zero             | header CRC32C |
//	 |                                               | of bytes 0-59 |
//	 +-----------------------------------------------+---------------+
//	64
//	 |  data (data length bytes)                                     |
//	 +---------------------------------------------------------------+
//
// The header repeats the key, so a file renamed or copied to the wrong name
// is caught; the file size must equal 64 + data length, so a truncated file
// is caught even before the data checksum is computed. A header of another
// format version is treated like damage: the chunk is dropped and
// refetched, which is all a cache needs for an upgrade.
//
// # Capacity
//
// Every chunk is charged its file size rounded up to Config.BlockBytes.
// Put reserves the charge, evicting first, before it creates the temp
// file, and the charge is released only once the file's blocks are free:
// after the file is unlinked and closed by every reader that opened it
// (the file system keeps an unlinked file's blocks until its last close).
// So the blocks of chunk files (temp files and unlinked files still being
// read included) never exceed CapacityBytes, even while many Puts, reads
// and evictions run at once. A descriptor kept open by the open-file
// cache (below) holds its chunk exactly like a reader.
//
// Each entry counts its readers in an atomic word, taken under the read
// lock at lookup and dropped after the reader's close; the removal that
// unlinks the file hands the release of the charge to the last reader
// (store.go, "Readers keep their chunk charged", has the argument). A hit
// takes no write lock for this. A reader that had looked a chunk up but
// opens it only after it was removed misses, rather than read a newer file
// of the same key that is charged to another entry.
//
// A Put that needs room that other Puts are still writing, that is being
// unlinked, or that readers of unlinked chunks still hold, waits for it
// (a wait bounded by one write, unlink or read) rather than evict more; if
// nothing more can be evicted (the rest is pinned), Put fails with
// ErrNoSpace and the caller serves the data uncached.
//
// A write that fails deletes its temp file and releases its reservation,
// so nothing leaks. An I/O error makes Put return it, wrapped.
//
// # A file system that holds less than the capacity
//
// The disk may be shared, or smaller than the capacity: then a write can
// fail with ENOSPC (or EDQUOT) although the store's accounting has room.
// The store adapts instead of failing every Put from then on (space.go).
// It keeps an effective capacity, the configured one unless the file
// system has shown it cannot hold that much:
//
//   - A Put whose write the file system refuses for want of space lowers
//     the effective capacity to what the store has on disk without that
//     chunk, evicts what the chunk needs and writes once more. If that
//     write is refused too, the Put fails (errors.Is finds ENOSPC or
//     EDQUOT) and the caller serves the data uncached.
//   - While the effective capacity is below the configured one, every
//     Put first sets it to the store's chunks on disk plus the file
//     system's free space (statfs f_bavail): the store evicts before it
//     writes instead of running into ENOSPC, follows another tenant that
//     grows or shrinks, and returns to the configured capacity once the
//     file system has room for it. statfs does not see quotas, so after
//     an EDQUOT the effective capacity is only ever lowered (until the
//     next Open).
//   - Open starts at the chunks on disk plus the free space if that is
//     less than the configured capacity.
//
// The effective capacity never goes below what the store cannot free
// (pinned chunks, files it could not delete) nor above the configured
// capacity, so the bound above holds whatever happens. The first lowering
// is logged at warn with the numbers and the refused write's error ("no
// space left on device"), the return to the configured capacity at info,
// the steps between at debug. Stats has EffectiveCapacityBytes and
// DiskFullWrites (writes the file system refused).
//
// The bound holds for the file system's real usage only if BlockBytes is
// at least its allocation unit and it does not allocate more than the
// rounded size (a file system that preallocates beyond the end of file,
// or needs extra metadata blocks for a fragmented file, can use a little
// more). The tests check it on a tmpfs of exactly the capacity, which
// refuses any page beyond it.
//
// # Eviction: S3-FIFO
//
// The store uses S3-FIFO (Yang et al., "FIFO queues are all you need for
// cache eviction", SOSP 2023): a small probation FIFO (10% of the capacity
// by default), a main FIFO, and a ghost FIFO of recently evicted keys.
// A new chunk enters the small queue (or main, if its key is in the ghost
// queue). A hit only bumps a 2-bit counter in the entry, atomically, under
// the read lock: no list is reordered and nothing is written to disk, so
// hits scale across readers and cost no persistent write. When the small
// queue is over its share, its oldest chunk leaves: to main if it was read
// since it came in, else out (its key to the ghost). Otherwise main's
// oldest chunk leaves unless its counter is non-zero, in which case it is
// re-queued with the counter decremented.
//
// Why S3-FIFO rather than 2Q or ARC: a training epoch is one long scan of
// a data set that is often larger than the cache, with a hot set (labels,
// indexes, small shared files, the next epoch's reuse) read again and
// again. Under S3-FIFO a one-pass scan only ever cycles through the small
// queue, so the main queue, where the hot set lives, is untouched (the
// tests check this with a scan of three times the capacity). 2Q gives the
// same protection but needs an LRU (a list move, so a write lock, on every
// hit); ARC also moves entries on every hit and adapts its split in ways
// that a long scan can still push. S3-FIFO needs neither, and its
// published miss ratios are as good as or better than both on block and
// web traces.
//
// After a restart every chunk starts in the main queue, ordered by file
// mtime (oldest evicted first), with a zero counter: the restart keeps the
// cache warm, and the first reads rebuild the counters.
//
// # Pinning
//
// Pin(ino) takes every chunk of an inode, present and future, out of the
// eviction queues until Unpin. Pins are held in memory only: whoever owns
// the list of pinned trees (cachefs, persisted in meta) re-applies them
// after Open, before serving.
//
// # Open files
//
// A hit that opens, reads and closes its chunk spends as much CPU on the
// open and close (and the path walk) as on the CRC. So the store keeps
// the descriptors of recently read chunks open (Config.OpenFiles, default
// DefaultOpenFiles, leaving 4096 descriptors of RLIMIT_NOFILE, or half of
// a small limit, to the rest; 0 turns it off), and a
// hit of such a chunk is one preadv and a CRC. A chunk file never changes
// once in place, so a descriptor reads its chunk's bytes for as long as it
// is open. Each cached descriptor is reference-counted (the cache's
// reference and one per reader using it): it is closed by whoever drops
// the last reference, so no reader ever uses a closed (and perhaps reused)
// descriptor number. Eviction or removal of the chunk takes it out of the
// cache before the unlink; the charge is returned once it is closed. Which
// descriptors stay is a CLOCK, with admission throttled while the cache is
// full so that a scan larger than the cache neither cycles through it
// uselessly nor pushes out the descriptors of a hot set (files.go). A
// process out of descriptors (EMFILE) sheds half of the cache and retries
// the open. Close closes them all. A chunk that is not cached is opened
// relative to a descriptor of the chunks directory, with its name built
// on the stack.
//
// # Integrity and crash consistency
//
// Get and ReadAt read the header and the whole chunk (one preadv) and check
// the header checksum, the key, the file size and the data CRC32C before a
// byte is returned. On any mismatch the chunk is unlinked and ErrCorrupt
// returned; it is never served. A Put writes a temp file in tmp/, fsyncs it
// if Config.Sync asks, and renames it into place, so a kill -9 leaves a
// chunk whole or absent: temp files are deleted by the next Open, and
// files of a size that cannot be a chunk are deleted by the scan. With
// SyncNone a power loss may leave a renamed chunk with zeroed or missing
// blocks; the checksums catch it on first read (or at Open with
// VerifyHeadersOnOpen, for everything but the data blocks).
//
// Open rebuilds the index from one listing per fanout directory and one
// fstatat per chunk, with up to 8 workers; no database is involved. Measured
// with BenchmarkOpen on a shared 2-core VM (load average 12): 200,000 chunks
// in 3.8 s wall; 50,000 in 0.62 s wall for 0.39 s of CPU, so about 1.5 s of
// CPU for 200,000. VerifyHeadersOnOpen roughly doubles that (one open and
// one 64-byte read more per chunk).
//
// # Concurrency
//
// All methods are safe for concurrent use. One RWMutex (Store.mu) guards
// the index and queues, and it is never held across file I/O. Get holds
// the read lock only to find the entry and count itself as its reader
// (atomics), and reads through a cached descriptor with atomics only;
// reads of different chunks, or of the same chunk, run in parallel. Only
// the last reader (or cached descriptor) of a chunk unlinked under it
// takes the write lock, to return its charge. The open-file cache has a
// mutex of its own (fileCache.mu), taken only when a descriptor is cached
// or dropped, after Store.mu's read lock when both are held. The store starts
// no long-lived goroutines (Open lists the fanout directories with a few
// workers and waits for them). Close waits for the operations in flight.
package chunkstore
