package nfsserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/buildbarn/go-xdr/pkg/runtime"
	"github.com/nascache/nascache/cachefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

var testKey = bytes.Repeat([]byte{0x5a}, handleKeyBytes)

// testServer runs a Server over a fakeFS on 127.0.0.1:0 for one test.
type testServer struct {
	srv   *Server
	fs    *fakeFS
	codec *handleCodec
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HandleKey = testKey
	cfg.Exports = []Export{{ID: 1, Path: "/data", AnonUID: 65534, AnonGID: 65533}}
	return cfg
}

func startServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	ids := make([]uint16, 0, len(cfg.Exports))
	for _, e := range cfg.Exports {
		ids = append(ids, e.ID)
	}
	fs := newFakeFS(ids...)
	srv, err := New(cfg, fs, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	codec, err := newHandleCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{srv: srv, fs: fs, codec: codec}
}

// root returns the handle of an export's root and its NodeID.
func (s *testServer) root(t *testing.T, export uint16) ([]byte, cachefs.NodeID) {
	t.Helper()
	n, _, err := s.fs.Root(context.Background(), export)
	if err != nil {
		t.Fatal(err)
	}
	return s.codec.encode(n), n
}

// testClient speaks ONC RPC over one TCP connection.
type testClient struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	xid  uint32
	cred rpcv2.OpaqueAuth
	pool bufferPool
}

func dial(t *testing.T, addr net.Addr) *testClient {
	t.Helper()
	c, err := net.Dial(addr.Network(), addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testClient{t: t, c: c, br: bufio.NewReader(c), cred: authSys(1000, 1000, 4, 5)}
}

func authSys(uid, gid uint32, gids ...uint32) rpcv2.OpaqueAuth {
	p := rpcv2.AuthsysParms{Stamp: 1, Machinename: "client", Uid: uid, Gid: gid, Gids: gids}
	return rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SYS, Body: enc(&p)}
}

func enc(v io.WriterTo) []byte {
	var b bytes.Buffer
	if _, err := v.WriteTo(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// callBytes encodes a call message (without record mark).
func callBytes(xid, rpcvers, prog, vers, proc uint32, cred rpcv2.OpaqueAuth, args []byte) []byte {
	msg := rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_CALL{Cbody: rpcv2.CallBody{
		Rpcvers: rpcvers, Prog: prog, Vers: vers, Proc: proc, Cred: cred,
		Verf: rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE},
	}}}
	return append(enc(&msg), args...)
}

func record(msg []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(msg))|lastFragmentBit)
	return append(out, msg...)
}

func (c *testClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send sends a call and returns its xid.
func (c *testClient) send(prog, vers, proc uint32, args []byte) uint32 {
	c.xid++
	c.write(record(callBytes(c.xid, 2, prog, vers, proc, c.cred, args)))
	return c.xid
}

// recv reads one reply.
func (c *testClient) recv() (uint32, rpcv2.ReplyBody, *bytes.Reader) {
	c.t.Helper()
	rec, err := readRecord(c.br, &c.pool, 4<<20)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	r := bytes.NewReader(append([]byte(nil), rec.b...))
	var msg rpcv2.RpcMsg
	if _, err := msg.ReadFrom(r); err != nil {
		c.t.Fatalf("decode reply: %v", err)
	}
	body, ok := msg.Body.(*rpcv2.RpcMsgBody_REPLY)
	if !ok {
		c.t.Fatalf("not a reply")
	}
	return msg.Xid, body.Rbody, r
}

// rawCall sends a call and returns the reply body.
func (c *testClient) rawCall(prog, vers, proc uint32, args []byte) (rpcv2.ReplyBody, *bytes.Reader) {
	c.t.Helper()
	xid := c.send(prog, vers, proc, args)
	got, body, r := c.recv()
	if got != xid {
		c.t.Fatalf("reply xid %d, want %d", got, xid)
	}
	return body, r
}

// call makes a call that must succeed at the RPC level and returns the
// reader positioned at the results.
func (c *testClient) call(prog, vers, proc uint32, args []byte) *bytes.Reader {
	c.t.Helper()
	body, r := c.rawCall(prog, vers, proc, args)
	if st := acceptStat(body); st != rpcv2.SUCCESS {
		c.t.Fatalf("prog %d proc %d: accept stat %v", prog, proc, st)
	}
	return r
}

func acceptStat(b rpcv2.ReplyBody) rpcv2.AcceptStat {
	a, ok := b.(*rpcv2.ReplyBody_MSG_ACCEPTED)
	if !ok {
		return -1
	}
	return a.Areply.ReplyData.GetStat()
}

// mnt mounts path and returns the status and root handle.
func (c *testClient) mnt(path string) (mount.Mountstat3, []byte) {
	c.t.Helper()
	var b bytes.Buffer
	if _, err := runtime.WriteASCIIString(&b, mount.MNTPATHLEN, path); err != nil {
		c.t.Fatal(err)
	}
	res, _, err := mount.ReadMountres3(c.call(progMount, 3, 1, b.Bytes()))
	if err != nil {
		c.t.Fatalf("decode MNT: %v", err)
	}
	if ok, isOK := res.(*mount.Mountres3_MNT3_OK); isOK {
		return mount.MNT3_OK, ok.Mountinfo.Fhandle
	}
	return res.GetFhsStatus(), nil
}

// dirop encodes diropargs3 with a byte-string name.
func dirop(fh []byte, name string) []byte {
	var b bytes.Buffer
	runtime.WriteVariableLengthOpaque(&b, ^uint32(0), fh)
	runtime.WriteVariableLengthOpaque(&b, ^uint32(0), []byte(name))
	return b.Bytes()
}

func fhArg(fh []byte) []byte {
	var b bytes.Buffer
	runtime.WriteVariableLengthOpaque(&b, ^uint32(0), fh)
	return b.Bytes()
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
