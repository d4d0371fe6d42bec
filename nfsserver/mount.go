package nfsserver

import (
	"context"
	"errors"
	"path"
	"slices"
	"strconv"
	"sync"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/rs/zerolog"
)

// errMountV1 is returned by the MOUNT v1 methods go-xdr's interface
// requires; the RPC layer answers v1 and v2 with PROG_MISMATCH before the
// dispatcher runs, so they are never called.
var errMountV1 = errors.New("nfsserver: MOUNT v1 is not served")

// mountEntry is one line of the DUMP list.
type mountEntry struct {
	host string
	path string
}

// mountProgram implements MOUNT v3 (RFC 1813 appendix I).
type mountProgram struct {
	fs      FS
	handles *handleCodec
	exports []*Export
	log     zerolog.Logger

	// mu guards mounts.
	mu sync.Mutex
	// mounts is the advisory list DUMP returns: host and path of every
	// MNT not yet followed by UMNT/UMNTALL. It lives in memory only.
	mounts map[mountEntry]struct{}
}

var _ mount.MountProgram = (*mountProgram)(nil)

func (m *mountProgram) MountV1MountprocNull(context.Context) error { return errMountV1 }
func (m *mountProgram) MountV1MountprocMnt(context.Context, string) (mount.Fhstatus, error) {
	return nil, errMountV1
}
func (m *mountProgram) MountV1MountprocDump(context.Context) (*mount.Mountbody, error) {
	return nil, errMountV1
}
func (m *mountProgram) MountV1MountprocUmnt(context.Context, string) error { return errMountV1 }
func (m *mountProgram) MountV1MountprocUmntall(context.Context) error      { return errMountV1 }
func (m *mountProgram) MountV1MountprocExport(context.Context) (*mount.Exportnode, error) {
	return nil, errMountV1
}

func (m *mountProgram) MountV3Mountproc3Null(context.Context) error { return nil }

func (m *mountProgram) export(p string) *Export {
	p = path.Clean(p)
	for _, e := range m.exports {
		if e.Path == p {
			return e
		}
	}
	return nil
}

// MountV3Mountproc3Mnt returns the root handle of the export at p, for a
// client the export admits.
func (m *mountProgram) MountV3Mountproc3Mnt(ctx context.Context, p string) (mount.Mountres3, error) {
	ci := callInfoFrom(ctx)
	exp := m.export(p)
	if exp == nil {
		return &mount.Mountres3_default{FhsStatus: mount.MNT3ERR_NOENT}, nil
	}
	if !exp.allows(ci.peer) {
		m.log.Info().Str("peer", ci.peer.String()).Str("path", p).Msg("mount refused: client not in export's networks")
		return &mount.Mountres3_default{FhsStatus: mount.MNT3ERR_ACCES}, nil
	}
	root, _, err := m.fs.Root(ctx, exp.ID)
	if err != nil {
		st, known := nfsStatus(err)
		if !known {
			m.log.Error().Str("path", p).Err(err).Msg("mount: root of export")
		}
		return &mount.Mountres3_default{FhsStatus: mountStatus(st)}, nil
	}
	m.mu.Lock()
	m.mounts[mountEntry{host: ci.peer.String(), path: exp.Path}] = struct{}{}
	m.mu.Unlock()
	return &mount.Mountres3_MNT3_OK{Mountinfo: mount.Mountres3Ok{
		Fhandle: m.handles.encode(root),
		// AUTH_SYS first: a client with no sec= option picks the first
		// flavor it knows. AUTH_NONE is accepted too (sec=none), served
		// as the export's anonymous user.
		AuthFlavors: []int32{int32(rpcv2.AUTH_SYS), int32(rpcv2.AUTH_NONE)},
	}}, nil
}

func (m *mountProgram) MountV3Mountproc3Dump(context.Context) (*mount.Mountbody, error) {
	m.mu.Lock()
	entries := make([]mountEntry, 0, len(m.mounts))
	for e := range m.mounts {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	slices.SortFunc(entries, func(a, b mountEntry) int {
		if a.host != b.host {
			if a.host < b.host {
				return -1
			}
			return 1
		}
		if a.path < b.path {
			return -1
		}
		if a.path > b.path {
			return 1
		}
		return 0
	})
	var list *mount.Mountbody
	for i := len(entries) - 1; i >= 0; i-- {
		list = &mount.Mountbody{MlHostname: entries[i].host, MlDirectory: entries[i].path, MlNext: list}
	}
	return list, nil
}

func (m *mountProgram) MountV3Mountproc3Umnt(ctx context.Context, p string) error {
	host := callInfoFrom(ctx).peer.String()
	m.mu.Lock()
	delete(m.mounts, mountEntry{host: host, path: path.Clean(p)})
	m.mu.Unlock()
	return nil
}

func (m *mountProgram) MountV3Mountproc3Umntall(ctx context.Context) error {
	host := callInfoFrom(ctx).peer.String()
	m.mu.Lock()
	for e := range m.mounts {
		if e.host == host {
			delete(m.mounts, e)
		}
	}
	m.mu.Unlock()
	return nil
}

// MountV3Mountproc3Export lists every export with its client networks (an
// empty group list means everyone).
func (m *mountProgram) MountV3Mountproc3Export(context.Context) (*mount.Exportnode, error) {
	var list *mount.Exportnode
	for i := len(m.exports) - 1; i >= 0; i-- {
		e := m.exports[i]
		var groups *mount.Groupnode
		for j := len(e.Clients) - 1; j >= 0; j-- {
			groups = &mount.Groupnode{GrName: e.Clients[j].String(), GrNext: groups}
		}
		list = &mount.Exportnode{ExDir: e.Path, ExGroups: groups, ExNext: list}
	}
	return list, nil
}

// mountStatus maps an NFS status to the MOUNT status of the same errno.
func mountStatus(st nfsv3.Nfsstat3) mount.Mountstat3 {
	switch m := mount.Mountstat3(st); m {
	case mount.MNT3ERR_PERM, mount.MNT3ERR_NOENT, mount.MNT3ERR_IO, mount.MNT3ERR_ACCES,
		mount.MNT3ERR_NOTDIR, mount.MNT3ERR_INVAL, mount.MNT3ERR_NAMETOOLONG, mount.MNT3ERR_NOTSUPP:
		return m
	}
	return mount.MNT3ERR_SERVERFAULT
}

func mountStatusName(st mount.Mountstat3) string {
	switch st {
	case mount.MNT3_OK:
		return "MNT3_OK"
	case mount.MNT3ERR_PERM:
		return "MNT3ERR_PERM"
	case mount.MNT3ERR_NOENT:
		return "MNT3ERR_NOENT"
	case mount.MNT3ERR_IO:
		return "MNT3ERR_IO"
	case mount.MNT3ERR_ACCES:
		return "MNT3ERR_ACCES"
	case mount.MNT3ERR_NOTDIR:
		return "MNT3ERR_NOTDIR"
	case mount.MNT3ERR_INVAL:
		return "MNT3ERR_INVAL"
	case mount.MNT3ERR_NAMETOOLONG:
		return "MNT3ERR_NAMETOOLONG"
	case mount.MNT3ERR_NOTSUPP:
		return "MNT3ERR_NOTSUPP"
	case mount.MNT3ERR_SERVERFAULT:
		return "MNT3ERR_SERVERFAULT"
	}
	return "MNT3ERR_" + strconv.Itoa(int(st))
}
