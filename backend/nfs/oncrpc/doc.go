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
// The reply header is decoded by hand (go-xdr's rpcv2 types allocate
// several objects per reply; its constants are used); accept, reject and
// auth statuses become the sentinels in errors.go (MismatchError,
// AuthError).
//
// # Concurrency model
//
// Client.New starts one goroutine per pool slot (Config.Conns). It dials,
// publishes the connection as ready, then runs the connection's reader
// (readLoop) and its watchdog (watch) until the connection fails; then it
// re-dials, at once the first time and with capped, jittered exponential
// backoff after that. Close cancels the slots, closes the connections and
// waits for every goroutine.
//
// A Call picks the ready connection with the fewest calls outstanding
// (from an atomic snapshot; waiting while a dial is under way, failing
// fast with ErrNoConnection when every slot is down), registers itself in
// that connection's xid table and appends its record to the connection's
// send queue. If no other call is writing, it becomes the writer: it
// writes everything queued with one writev (records queued meanwhile go
// with the next one) until the queue is empty, so no call waits to write
// and no goroutine is woken to do it. Then it waits for its reply.
//
// The reader reads each reply's xid, claims the call from the table and
// runs the call's Reply decoder on the reader goroutine, straight from the
// connection's read buffer: a READ decodes its data directly into the
// caller's buffer, read from the socket with readv(2) (one copy, kernel to
// user, but for the few read-ahead bytes the buffer catches). Call cannot
// return while Reply runs, so Reply may write into caller memory. On a
// TCP connection the reader hands decoded replies to their calls in small
// batches, just before it would wait for the socket, and waits in poll(2)
// on its own thread with the socket out of the Go runtime's network
// poller (readBuffer and sock say why: on a 2-core machine the runtime's
// per-reply hand-offs between threads cost more CPU than the data).
//
// Cancellation (ctx done): a call whose record is still queued is taken
// out of the queue, never sent, and returns at once; one already sent
// leaves the table at once (its reply, if it comes, is skipped); one
// whose reply is being decoded waits for the decode. A call never returns
// while a writer may still read its record or Request.Payload: one whose
// batch is being written waits for that write (bounded by StallTimeout).
//
// A broken connection (read or write error, framing violation, a record
// over Config.MaxRecordBytes) fails every call in its table with
// ErrConnLost (retryable: the server may or may not have run the call);
// a well-framed but undecodable reply fails only its call
// (ErrGarbageReply). Config.StallTimeout bounds each write, and the rest
// of a reply once it has started. Waiting for a reply is bounded by the
// call's ctx, by Request.Deadline and by Config.SilentTimeout: a call
// that has heard nothing at all from the server for that long since it
// was sent declares the connection dead (a server that vanished without
// a FIN or RST), so the pool re-dials. Deadlines and silence are watched
// by one timer per connection (watch), not one per call.
//
// # Lock order
//
// Client.mu (slot states), conn.mu (xid table, send queue) and sock.mu
// (the descriptor's life) are never held together, nor across I/O; a
// call's writer holds none of them while it writes.
package oncrpc
