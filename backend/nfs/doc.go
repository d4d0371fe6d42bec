// Package nfs is nascache's NFSv3 origin: its own NFSv3 (RFC 1813) and
// MOUNT v3 client, on the pipelined RPC client of package oncrpc, and the
// backend.Origin built on it (New). Origin handles are the server's NFS
// file handles (at most 64 bytes), stable for as long as the server keeps
// them.
//
// # Origin URL
//
//	nfs://HOST[:PORT]/EXPORT[?mountport=N&portmapport=N&uid=N&gid=N&conns=N&privport=BOOL&version=3]
//
// See Target for each key. Ports not given are asked of the portmapper
// (GETPORT, program 100000 v2) on HOST.
//
// # What it does on top of the RPC client
//
//   - Every call carries its caller's AUTH_SYS credentials (backend.Cred),
//     so the NAS applies its own permission checks and squashing.
//   - READ and WRITE larger than the server's rtmax/wtmax (FSINFO, capped
//     by Options.MaxIOBytes) are split into pieces that are all in flight
//     at once; each READ piece is decoded straight into its part of the
//     caller's buffer. Short writes are re-sent from where the server
//     stopped.
//   - NFS3ERR_JUKEBOX is retried with backoff for up to Options.RetryFor;
//     a lost connection is retried the same way for idempotent procedures
//     (GETATTR, LOOKUP, ACCESS, READLINK, READ, WRITE, COMMIT,
//     READDIRPLUS, FSSTAT, FSINFO, PATHCONF, unguarded SETATTR,
//     UNCHECKED and EXCLUSIVE CREATE). What remains is returned matching
//     backend.ErrUnavailable, so backend.IsRetryable is true and the
//     caller can answer its own client with NFS3ERR_JUKEBOX.
//   - Every call is bounded by Options.CallTimeout (5 s, retries
//     included), so a server that stalls yields backend.ErrUnavailable
//     (NFS3ERR_JUKEBOX to nascache's clients, which retry) instead of a
//     hang; a connection silent for twice that is dropped and re-made.
//   - Outages: Open (unlike New) returns before the export is mounted and
//     mounts in the background until it succeeds, so that nascache starts
//     with its NAS down; calls made before then fail fast with
//     ErrNotMounted (matching backend.ErrUnavailable). Once mounted, the
//     Origin logs every change of its connection state ("nfs origin
//     down" / "nfs origin up"), Up reports it for a gauge, and
//     Options.OnError sees every failed call for an error counter. Nothing
//     is re-mounted after an outage: NFSv3 handles outlive a server
//     restart.
//   - Status codes become backend sentinels in one place (errors.go,
//     StatusError keeps the exact nfsstat3).
//   - UNSTABLE writes: the data of each is kept (Options.UnstableLimitBytes
//     in all, past which writes go FILE_SYNC) with the write verifier the
//     server returned. Commit sends COMMIT and, if any kept write got a
//     different verifier (the server restarted and may have lost it),
//     re-sends all kept data of the file FILE_SYNC in the order written.
//   - ReadDir streams READDIRPLUS page by page: a page is decoded on the
//     connection's reader, then handed to fn on the caller's goroutine
//     before the next page is asked for. Names are raw bytes (not only
//     ASCII), unlike go-xdr's generated decoders, which is why the NFSv3
//     structures are encoded by hand (xdr3.go) on oncrpc's Encoder and
//     Decoder; go-xdr supplies the constants.
//
// # Concurrency and lock order
//
// All Origin methods are safe for concurrent use. The only locks are the
// UNSTABLE bookkeeping's: unstableFile.commitMu (shared by writes to a
// file, exclusive for its Commit; the only lock held across RPCs), then
// unstableSet.mu, then unstableFile.mu. New starts the RPC clients'
// connection goroutines and the state monitor (Open also the mount loop);
// Close stops the mount loop and the monitor, sends UMNT (best effort,
// 2 s) and stops every connection, waiting for all of them.
package nfs
