// Package oncrpc is an ONC RPC v2 (RFC 5531) client over TCP, built for an
// NFS client that must keep many calls in flight: a small pool of
// connections, many outstanding calls on each, replies matched by xid.
//
// # Wire format
//
// Every message is a record made of fragments (record marking, RFC 5531
// section 11), each preceded by a 4-byte header: top bit = last fragment,
// low 31 bits = fragment length. A call is one single-fragment record:
//
//	+------+-----+------+---+------+------+------+------------+------------+------+---------+-----+
//	| mark | xid | CALL | 2 | prog | vers | proc | cred (auth)| verf (NONE)| args | payload | pad |
//	+------+-----+------+---+------+------+------+------------+------------+------+---------+-----+
//	  4      4     4      4   4      4      4     flavor+body  0, 0
//
// header and args are encoded into one pooled buffer; a payload (WRITE
// data) is not copied but handed to writev together with the buffer.
// Credentials are AUTH_SYS (stamp 0, Config.MachineName, uid, gid, at most
// 16 gids) or AUTH_NONE, chosen per call. A reply may come in any number
// of fragments; it is read as a stream, never assembled in memory:
//
//	xid | REPLY | MSG_ACCEPTED | verf | accept_stat | results...
//	xid | REPLY | MSG_DENIED   | reject_stat | mismatch_info or auth_stat
//
// go-xdr's rpcv2 types decode the reply header; accept, reject and auth
// statuses become the sentinels in errors.go (MismatchError, AuthError).
//
// # Concurrency model
//
// Client.New starts one goroutine per pool slot (Config.Conns). It dials,
// publishes the connection as ready, then runs the connection's reader
// (readLoop) until the connection fails; then it re-dials, at once the
// first time and with capped, jittered exponential backoff after that.
// Close cancels the slots, closes the connections and waits for every
// goroutine.
//
// A Call picks the ready connection with the fewest calls outstanding
// (waiting while a dial is under way, failing fast with ErrNoConnection
// when every slot is down), registers itself in that connection's xid
// table, writes its record while holding the connection's write semaphore
// (one writer at a time, so records never interleave) and waits. The
// reader reads each reply's xid, claims the call from the table and runs
// the call's Reply decoder on the reader goroutine, straight from the
// socket's buffered reader: a READ decodes its data directly into the
// caller's buffer (one copy, kernel to user). Call cannot return while
// Reply runs, so Reply may write into caller memory: a cancelled call
// that is still in the table leaves at once (its reply, if it comes, is
// skipped); one whose reply is being decoded waits for the decode.
//
// A broken connection (read or write error, framing violation, a record
// over Config.MaxRecordBytes) fails every call in its table with
// ErrConnLost (retryable: the server may or may not have run the call);
// a well-framed but undecodable reply fails only its call
// (ErrGarbageReply). Config.StallTimeout bounds a write, and the rest of a
// reply once it has started. Waiting for a reply is bounded by the call's
// ctx and by Config.SilentTimeout: a call that has heard nothing at all
// from the server for that long since it was sent declares the connection
// dead (a server that vanished without a FIN or RST), so the pool re-dials.
//
// # Lock order
//
// Client.mu (slot states) and conn.mu (xid table) are never held
// together, nor across I/O. conn.wsem is held only while one record is
// written.
package oncrpc
