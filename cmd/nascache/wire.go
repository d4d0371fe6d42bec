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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/backend/nfs"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/chunkstore"
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
	chunks  *chunkstore.Store // nil when cache_size is 0
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

	om, err := newOriginMetrics(reg)
	if err != nil {
		return nil, err
	}
	fsCfg := cachefs.DefaultConfig()
	if err := n.openChunks(cfg, &fsCfg, logger.With().Str("component", "chunkstore").Logger()); err != nil {
		return nil, err
	}
	fsCfg.Registry = reg
	srvCfg := nfsserver.DefaultConfig()
	srvCfg.Listen = cfg.Listen
	srvCfg.PortmapListen = cfg.PortmapListen
	srvCfg.HandleKey = n.db.HandleKey()
	for i, e := range cfg.Exports {
		id, err := n.db.ExportID(e.Path)
		if err != nil {
			return nil, fmt.Errorf("exports[%d] %s: %w", i, e.Path, err)
		}
		o, err := openOrigin(e.Origin, logger.With().Str("export", e.Path).Logger(), om.onError(e.Path))
		if err != nil {
			return nil, fmt.Errorf("exports[%d].origin %s: %w", i, e.Origin, err)
		}
		n.origins = append(n.origins, o)
		if err := om.watch(e.Path, o); err != nil {
			return nil, fmt.Errorf("exports[%d] %s: metrics: %w", i, e.Path, err)
		}
		consistency, err := e.consistency()
		if err != nil {
			return nil, fmt.Errorf("exports[%d].consistency: %w", i, err)
		}
		fsCfg.Exports = append(fsCfg.Exports, cachefs.ExportConfig{ID: id, Path: e.Path, Origin: o, Consistency: consistency})
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
		var w warmer // nil without a data cache: POST /v1/warm answers 501
		if n.chunks != nil {
			w = n.fs
		}
		// The admin server's Run owns the warm jobs: at shutdown it stops
		// HTTP, then cancels the jobs and waits for them.
		n.admin.serveAPI(newAdminAPI(adminAPIConfig{
			Warmer: w, Stats: statsSource(n.fs, cfg.Exports, n.origins), // origins[i] serves Exports[i]
			Exports: cfg.Exports, Version: versionString(), Started: time.Now(),
		}, logger.With().Str("component", "adminapi").Logger()))
	}
	// Last: the server has no Close; only Run releases its listeners,
	// so nothing may fail after Listen.
	if err := n.srv.Listen(); err != nil {
		return nil, err
	}
	return n, nil
}

// chunksDir is the chunk store's directory inside data_dir.
const chunksDir = "chunks"

// openChunks opens the chunk store under data_dir/chunks with the
// configured capacity and chunk size and puts it into fsCfg; with
// cache_size 0 it leaves the data cache off. The sizes were checked by
// Validate.
func (n *node) openChunks(cfg *Config, fsCfg *cachefs.Config, logger zerolog.Logger) error {
	capacity, err := cfg.cacheSizeBytes()
	if err != nil {
		return fmt.Errorf("cache_size: %w", err)
	}
	chunk, err := cfg.chunkSizeBytes()
	if err != nil {
		return fmt.Errorf("chunk_size: %w", err)
	}
	fsCfg.ChunkSizeBytes = int(chunk)
	fsCfg.OriginConcurrency = cfg.originConcurrency()
	if capacity == 0 {
		return nil
	}
	sc := chunkstore.DefaultConfig()
	sc.Dir = filepath.Join(cfg.DataDir, chunksDir)
	sc.CapacityBytes = capacity
	sc.MaxChunkBytes = int(chunk)
	n.chunks, err = chunkstore.Open(sc, logger)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	fsCfg.Chunks = n.chunks
	return nil
}

// openOrigin opens the origin an export's URL names. The URL was checked
// by Validate. An NFS origin that is down does not stop the node from
// starting: it is mounted in the background (nfs.Open), and until then,
// and whenever it is down later, calls that need it get NFS3ERR_JUKEBOX
// (MNT3ERR_SERVERFAULT at mount time) and the state is logged.
func openOrigin(raw string, logger zerolog.Logger, onError func(op string, err error)) (backend.Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse origin: %w", err)
	}
	switch u.Scheme {
	case "file":
		return local.New(u.Path, local.Options{Logger: logger})
	case "nfs":
		return nfs.Open(raw, nfs.Options{Logger: logger, OnError: onError})
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
	if n.chunks != nil {
		if err := n.chunks.Close(); err != nil {
			n.logger.Error().Err(err).Msg("close chunk store")
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
