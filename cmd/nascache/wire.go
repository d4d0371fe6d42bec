package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/backend/nfs"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/meta"
	"github.com/nascache/nascache/nfsserver"
)

// metaFile is the name of the meta database inside data_dir.
const metaFile = "meta.db"

// node is one running nascache: everything buildNode wired, in the order
// it was built. Close releases it in reverse order.
type node struct {
	logger  zerolog.Logger
	db      *meta.DB
	origins []backend.Origin
	fs      *cachefs.FS
	srv     *nfsserver.Server
	admin   *adminServer // nil when admin_listen is empty
	// adminRan is set when Run started the admin server (which then
	// owns and closes its listener).
	adminRan bool
	ready    atomic.Bool // read by /healthz
}

// buildNode is the one wiring function: it opens the meta database and
// the origins, builds the file system and the server over them, and binds
// the NFS, portmap and admin listeners. Nothing is served until Run. On
// error everything opened so far is closed again.
func buildNode(ctx context.Context, cfg *Config, logger zerolog.Logger) (_ *node, err error) {
	n := &node{logger: logger}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	n.db, err = meta.Open(filepath.Join(cfg.DataDir, metaFile), meta.Options{Logger: logger.With().Str("component", "meta").Logger()})
	if err != nil {
		return nil, err
	}

	fsCfg := cachefs.DefaultConfig()
	srvCfg := nfsserver.DefaultConfig()
	srvCfg.Listen = cfg.Listen
	srvCfg.PortmapListen = cfg.PortmapListen
	srvCfg.HandleKey = n.db.HandleKey()
	for i, e := range cfg.Exports {
		id, err := n.db.ExportID(e.Path)
		if err != nil {
			return nil, fmt.Errorf("exports[%d] %s: %w", i, e.Path, err)
		}
		o, err := openOrigin(ctx, e.Origin, logger.With().Str("export", e.Path).Logger())
		if err != nil {
			return nil, fmt.Errorf("exports[%d].origin %s: %w", i, e.Origin, err)
		}
		n.origins = append(n.origins, o)
		fsCfg.Exports = append(fsCfg.Exports, cachefs.ExportConfig{ID: id, Path: e.Path, Origin: o})
		squash, err := nfsserver.ParseSquash(e.Squash)
		if err != nil {
			return nil, fmt.Errorf("exports[%d].squash: %w", i, err)
		}
		srvCfg.Exports = append(srvCfg.Exports, nfsserver.Export{
			ID:       id,
			Path:     e.Path,
			Clients:  e.clientPrefixes(),
			ReadOnly: e.ReadOnly,
			Squash:   squash,
			AnonUID:  *e.AnonUID,
			AnonGID:  *e.AnonGID,
		})
	}
	n.fs, err = cachefs.New(fsCfg, n.db, logger.With().Str("component", "cachefs").Logger())
	if err != nil {
		return nil, err
	}
	n.srv, err = nfsserver.New(srvCfg, n.fs, logger.With().Str("component", "nfsserver").Logger(), reg)
	if err != nil {
		return nil, err
	}
	if cfg.AdminListen != "" {
		n.admin, err = listenAdmin(cfg.AdminListen, &n.ready, reg, logger.With().Str("component", "admin").Logger())
		if err != nil {
			return nil, err
		}
	}
	// Last: the server has no Close; only Run releases its listeners,
	// so nothing may fail after Listen.
	if err := n.srv.Listen(); err != nil {
		return nil, err
	}
	return n, nil
}

// openOrigin opens the origin an export's URL names. The URL was checked
// by Validate.
func openOrigin(ctx context.Context, raw string, logger zerolog.Logger) (backend.Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse origin: %w", err)
	}
	switch u.Scheme {
	case "file":
		return local.New(u.Path, local.Options{Logger: logger})
	case "nfs":
		return nfs.New(ctx, raw, nfs.Options{Logger: logger})
	}
	return nil, fmt.Errorf("origin scheme %q: %w", u.Scheme, errors.ErrUnsupported)
}

// nfsAddr is the address NFS and MOUNT are served on.
func (n *node) nfsAddr() net.Addr { return n.srv.Addr() }

// Run serves until ctx is cancelled, then stops gracefully and releases
// everything. It tells systemd (notifySocket, empty when not under
// systemd) READY=1 once the server runs and STOPPING=1 when it stops.
func (n *node) Run(ctx context.Context, notifySocket string) error {
	defer n.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.srv.Run(gctx) })
	if n.admin != nil {
		n.adminRan = true
		g.Go(func() error { return n.admin.Run(gctx) })
	}
	n.ready.Store(true)
	ev := n.logger.Info().Stringer("nfs", n.srv.Addr())
	if pm := n.srv.PortmapAddr(); pm != nil {
		ev = ev.Stringer("portmap", pm)
	}
	if n.admin != nil {
		ev = ev.Stringer("admin", n.admin.Addr())
	}
	ev.Msg("serving")
	if _, err := sdNotify(notifySocket, "READY=1"); err != nil {
		n.logger.Warn().Err(err).Msg("systemd readiness")
	}
	<-gctx.Done()
	n.ready.Store(false)
	if ctx.Err() != nil {
		n.logger.Info().Msg("stopping")
	}
	if _, err := sdNotify(notifySocket, "STOPPING=1"); err != nil {
		n.logger.Warn().Err(err).Msg("systemd stopping")
	}
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	n.logger.Info().Msg("stopped")
	return nil
}

// close releases what buildNode opened, in reverse order; it is safe on a
// partly built node. Errors are logged: there is nobody left to return
// them to.
func (n *node) close() {
	if n.admin != nil && !n.adminRan {
		if err := n.admin.ln.Close(); err != nil {
			n.logger.Error().Err(err).Msg("close admin listener")
		}
	}
	if n.fs != nil {
		if err := n.fs.Close(); err != nil {
			n.logger.Error().Err(err).Msg("close file system")
		}
	}
	for _, o := range n.origins {
		if err := o.Close(); err != nil {
			n.logger.Error().Err(err).Msg("close origin")
		}
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			n.logger.Error().Err(err).Msg("close meta db")
		}
	}
}
