package nfsserver

// A minimal portmapper (RFC 1833, program 100000 version 2), so that
// `mount -t nfs -o vers=3 host:/data /mnt` works on a host where no rpcbind
// runs. It answers for the two programs this server serves and nothing
// else; SET and UNSET are refused (false). Clients that ask rpcbind v3/v4
// first get PROG_MISMATCH 2..2 and fall back to v2, as they do with an old
// portmap. go-xdr has no portmap types, so the few XDR items are done here
// with its runtime helpers.

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/buildbarn/go-xdr/pkg/runtime"
)

const (
	pmapVers        = 2
	pmapProcNull    = 0
	pmapProcSet     = 1
	pmapProcUnset   = 2
	pmapProcGetport = 3
	pmapProcDump    = 4
	ipprotoTCP      = 6
	ipprotoUDP      = 17
	// maxUDPMessageBytes bounds a portmap datagram (calls are tiny).
	maxUDPMessageBytes = 8192
)

// pmapMapping is struct mapping of RFC 1833.
type pmapMapping struct {
	prog, vers, prot, port uint32
}

func readMapping(r io.Reader) (pmapMapping, error) {
	var m pmapMapping
	for _, f := range []*uint32{&m.prog, &m.vers, &m.prot, &m.port} {
		v, _, err := runtime.ReadUnsignedInt(r)
		if err != nil {
			return pmapMapping{}, err
		}
		*f = v
	}
	return m, nil
}

// rawResult is a result already encoded as XDR.
type rawResult []byte

func (r rawResult) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r)
	return int64(n), err
}

func (r rawResult) GetEncodedSizeBytes() int { return len(r) }

// portmapper answers program 100000 v2 for the NFS/MOUNT port.
type portmapper struct {
	// port is the TCP port of NFS and MOUNT.
	port uint32
	// selfPort is the portmapper's own port (TCP and UDP). TI-RPC clients
	// such as rpcinfo look the portmapper itself up before using it.
	selfPort uint32
}

// mappings are the registrations DUMP lists: our two programs and the
// portmapper itself, as a real portmapper lists itself.
func (p *portmapper) mappings() []pmapMapping {
	return []pmapMapping{
		{prog: progNFS, vers: 3, prot: ipprotoTCP, port: p.port},
		{prog: progMount, vers: 3, prot: ipprotoTCP, port: p.port},
		{prog: progPortmap, vers: pmapVers, prot: ipprotoTCP, port: p.selfPort},
		{prog: progPortmap, vers: pmapVers, prot: ipprotoUDP, port: p.selfPort},
	}
}

func (p *portmapper) getport(m pmapMapping) uint32 {
	for _, reg := range p.mappings() {
		if reg.prog == m.prog && reg.vers == m.vers && reg.prot == m.prot {
			return reg.port
		}
	}
	return 0
}

func (p *portmapper) handle(rp *reply, h *rpcHandler, peer netip.Addr, xid, vers, proc uint32, r io.Reader) {
	if vers != pmapVers {
		var d rpcv2.AcceptedReplyData_PROG_MISMATCH
		d.MismatchInfo.Low, d.MismatchInfo.High = pmapVers, pmapVers
		h.accepted(rp, xid, &d)
		return
	}
	var out bytes.Buffer
	x := xdrWriter{w: &out}
	switch proc {
	case pmapProcNull:
	case pmapProcSet, pmapProcUnset:
		if _, err := readMapping(r); err != nil {
			h.garbage(rp, xid, err, peer)
			return
		}
		x.u32(0) // false: registrations are fixed
	case pmapProcGetport:
		m, err := readMapping(r)
		if err != nil {
			h.garbage(rp, xid, err, peer)
			return
		}
		x.u32(p.getport(m))
	case pmapProcDump:
		for _, m := range p.mappings() {
			x.u32(1)
			x.u32(m.prog)
			x.u32(m.vers)
			x.u32(m.prot)
			x.u32(m.port)
		}
		x.u32(0)
	default:
		h.accepted(rp, xid, &rpcv2.AcceptedReplyData_default{Stat: rpcv2.PROC_UNAVAIL})
		return
	}
	rp.status = "OK"
	h.success(rp, xid, rawResult(out.Bytes()))
}

// serveUDP answers portmap calls arriving as datagrams on pc until pc is
// closed. Calls are handled one at a time: they are tiny.
func (s *Server) serveUDP(ctx context.Context, pc *net.UDPConn, h *rpcHandler) {
	buf := make([]byte, maxUDPMessageBytes)
	for {
		n, addr, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !isClosed(err) {
				s.log.Warn().Err(err).Msg("portmap udp read failed")
			}
			return
		}
		rp := h.handle(ctx, addr.Addr().Unmap(), buf[:n])
		if rp == nil {
			continue
		}
		// A datagram carries one message without record marking.
		if _, err := pc.WriteToUDPAddrPort(rp.out[recordMarkBytes:], addr); err != nil {
			s.log.Debug().Err(err).Msg("portmap udp write failed")
		}
		h.pool.put(rp.buf)
	}
}
