package nfs

import (
	"context"
	"fmt"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// MOUNT v3 (RFC 1813 appendix I) and portmapper v2 (RFC 1833) calls.

const (
	mountVers       = 3
	mountProcMnt    = 1
	mountProcUmnt   = 3
	mountProcExport = 5

	pmapProg        = 100000
	pmapVers        = 2
	pmapProcGetport = 3
	ipprotoTCP      = 6
)

// mnt asks mountd for the root handle of export.
func mnt(ctx context.Context, c *oncrpc.Client, auth *oncrpc.AuthSys, export string) (backend.Handle, error) {
	var fh backend.Handle
	err := c.Call(ctx, &oncrpc.Request{
		Prog: mount.MOUNT_PROGRAM_PROGRAM_NUMBER, Vers: mountVers, Proc: mountProcMnt, Auth: auth,
		Args: func(e *oncrpc.Encoder) { e.String(export) },
		Reply: func(d *oncrpc.Decoder) error {
			if st := d.Uint32(); st != uint32(mount.MNT3_OK) {
				return &MountError{Export: export, Status: st}
			}
			fh = backend.Handle(d.Opaque(mount.FHSIZE3))
			n := d.Uint32() // auth_flavors<>: AUTH_SYS is what we send anyway
			for i := uint32(0); i < n && d.Err() == nil; i++ {
				d.Uint32()
			}
			return nil
		},
	})
	if err != nil {
		return nil, wrap("mnt "+export, err)
	}
	return fh, nil
}

// umnt tells mountd the export is no longer used (advisory only).
func umnt(ctx context.Context, c *oncrpc.Client, auth *oncrpc.AuthSys, export string) error {
	err := c.Call(ctx, &oncrpc.Request{
		Prog: mount.MOUNT_PROGRAM_PROGRAM_NUMBER, Vers: mountVers, Proc: mountProcUmnt, Auth: auth,
		Args: func(e *oncrpc.Encoder) { e.String(export) },
	})
	if err != nil {
		return wrap("umnt "+export, err)
	}
	return nil
}

// Export is one entry of a server's export list.
type Export struct {
	Dir    string
	Groups []string
}

// exports lists the server's exports (MOUNTPROC3_EXPORT).
func exports(ctx context.Context, c *oncrpc.Client) ([]Export, error) {
	var out []Export
	err := c.Call(ctx, &oncrpc.Request{
		Prog: mount.MOUNT_PROGRAM_PROGRAM_NUMBER, Vers: mountVers, Proc: mountProcExport,
		Reply: func(d *oncrpc.Decoder) error {
			out = out[:0]
			for d.Bool() {
				ex := Export{Dir: d.String(mount.MNTPATHLEN)}
				for d.Bool() {
					ex.Groups = append(ex.Groups, d.String(mount.MNTNAMLEN))
				}
				out = append(out, ex)
			}
			return nil
		},
	})
	if err != nil {
		return nil, wrap("export", err)
	}
	return out, nil
}

// getport asks the portmapper which TCP port serves prog/vers.
func getport(ctx context.Context, c *oncrpc.Client, prog, vers uint32) (int, error) {
	var port uint32
	err := c.Call(ctx, &oncrpc.Request{
		Prog: pmapProg, Vers: pmapVers, Proc: pmapProcGetport,
		Args: func(e *oncrpc.Encoder) {
			e.Uint32(prog)
			e.Uint32(vers)
			e.Uint32(ipprotoTCP)
			e.Uint32(0)
		},
		Reply: func(d *oncrpc.Decoder) error { port = d.Uint32(); return nil },
	})
	if err != nil {
		return 0, wrap(fmt.Sprintf("portmap getport %d v%d", prog, vers), err)
	}
	if port == 0 || port > 65535 {
		return 0, fmt.Errorf("nfs portmap getport %d v%d: %w: program not registered", prog, vers, backend.ErrUnavailable)
	}
	return int(port), nil
}
