// Package nfsserver is nascache's protocol front end: ONC RPC over TCP
// (RFC 5531) serving NFSv3 (RFC 1813, all 22 procedures) and MOUNT v3 on
// one port, plus an optional portmapper (program 100000 v2, TCP and UDP),
// over the FS interface that *cachefs.FS implements.
//
// It owns everything that is about the wire and the client: record marking
// and the bounded per-connection pipeline (rpc.go), credentials (AUTH_SYS;
// AUTH_NONE is the export's anonymous user), RPC rejections, export rules
// (client networks, read-only, squash), the file handle codec (handle.go)
// and the one mapping from errors to NFS3ERR_* (errors.go). It knows
// nothing of origins or caches.
//
// # Types and dispatch
//
// Arguments and results are github.com/buildbarn/go-xdr's generated
// NFSv3/MOUNT/RPCv2 types, dispatched by its generated program services,
// but the connection loop is ours (see docs/architecture.md): a call whose
// arguments do not decode gets GARBAGE_ARGS and the connection lives on;
// at most Config.MaxInFlightPerConn calls of a connection run at once, and
// a slot is taken before the next record is read, so a flooding client is
// held back by TCP flow control. Calls run on the connection's worker
// goroutines (started as needed, kept until the connection ends, so their
// grown stacks are reused). Each reply goes out whole and in order of
// completion: replies that become ready while another is being written
// are queued and the writer sends them all in one writev. A panic while serving a call (a broken
// invariant below) is logged with its stack and answered SYSTEM_ERR; the
// process and the connection live on. Records over 1 MiB of WRITE data plus
// headers close the connection (the stream cannot be resynchronised).
// go-xdr reads file names as ASCII only, so the procedures that carry
// names and the results that return them are coded in names.go.
//
// # Write verifier
//
// WRITE and COMMIT replies carry one verifier, random per process, so a
// client re-sends its unstable writes after a restart. It also changes
// when a WRITE or COMMIT fails at the storage (I/O, space, quota), as
// knfsd's does: a failed sync may have dropped other unstable data.
//
// # Client rules
//
// A client outside an export's Clients gets MNT3ERR_ACCES at MNT and
// NFS3ERR_STALE on every NFS call with a handle of that export, as Linux
// knfsd does: there, nfsd_set_fh_dentry (fs/nfsd/nfsfh.c) finds no export
// for the client (rqst_exp_find gives -ENOENT) and answers nfserr_stale,
// which is also what a client sees after its network is removed from an
// export. Such a client can never mount, so it only ever holds a handle
// it was given before the rules changed, or a stolen one. NULL needs no
// handle and is answered for everyone. A read-only export answers
// every mutating procedure with NFS3ERR_ROFS and masks MODIFY, EXTEND and
// DELETE out of ACCESS replies. Squash root maps uid 0 and gid 0, squash
// all maps every caller, to AnonUID/AnonGID.
//
// # File handles
//
// A handle is 32 bytes; the MAC is HMAC-SHA256 of bytes 0..16 under
// Config.HandleKey, truncated to 16 bytes:
//
//	0      1      2      4              12     16                      32
//	+------+------+------+--------------+------+-----------------------+
//	| ver  | rsvd |export|    inode     | gen  |  MAC (HMAC-SHA256/16) |
//	|  =1  |  =0  | u16  |     u64      | u32  |                       |
//	+------+------+------+--------------+------+-----------------------+
//	(all integers big-endian)
//
// A handle of the wrong length or version, or whose MAC does not match,
// gets NFS3ERR_BADHANDLE; one whose export is no longer configured, or
// whose inode the FS reports gone, gets NFS3ERR_STALE.
//
// # Concurrency and lock order
//
// Every lock is a leaf: no goroutine holds two at once, and none is held
// while the FS is called or the network is read.
//   - conn.writeMu: held around the one Write of a reply.
//   - Server.mu: the set of open connections and the running flag.
//   - mountProgram.mu: the DUMP list.
//
// Goroutines: Run starts the accept loops (NFS, portmap TCP), the portmap
// UDP loop, one goroutine per connection and one per call in flight; Run
// closes the listeners and connections when its context is cancelled and
// returns only after all of them have ended.
package nfsserver
