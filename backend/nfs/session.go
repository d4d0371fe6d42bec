package nfs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// Origin is an NFSv3 export used as a backend.Origin. Its handles are the
// server's NFS file handles (at most 64 bytes). Safe for concurrent use.
//
// Its life: New mounts before it returns; Open returns at once and mounts
// in the background, retrying until it succeeds. Until the export is
// mounted every call fails with an error matching backend.ErrUnavailable
// (and ErrNotMounted). Once mounted, an Origin watches its connections and
// logs each change of state (origin up / down); Up reports it.
type Origin struct {
	opts     Options
	url      Target // as parsed; ports may still be 0 (portmapper)
	rootAuth oncrpc.AuthSys
	unstable *unstableSet

	sess    atomic.Pointer[session] // nil until mounted; never changes after
	mounted chan struct{}           // closed once sess is set

	ctx    context.Context // cancelled by Close: stops the goroutines below
	cancel context.CancelFunc
	wg     sync.WaitGroup // the mount loop (Open) and the state monitor

	closeOnce sync.Once
}

// session is what a successful mount established. Immutable.
type session struct {
	target       Target         // ports resolved
	rpc          *oncrpc.Client // NFS port
	mountC       *oncrpc.Client // MOUNT port; used at mount, Exports and Close
	root         backend.Handle
	rtmax, wtmax uint32
}

var _ backend.Origin = (*Origin)(nil)

func newOrigin(rawURL string, opts Options) (*Origin, error) {
	t, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if t.Conns != 0 {
		opts.Conns = t.Conns
	}
	if t.PrivPort != nil {
		opts.PrivilegedPort = *t.PrivPort
	}
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Origin{
		opts: opts, url: t, rootAuth: oncrpc.AuthSys{UID: t.UID, GID: t.GID},
		unstable: newUnstableSet(opts.UnstableLimitBytes),
		mounted:  make(chan struct{}),
		ctx:      ctx, cancel: cancel,
	}, nil
}

// New connects to the export rawURL names (see Target for the URL form),
// mounts it and reads its FSINFO, and fails if any of that fails. Ports
// not in the URL are asked of the portmapper. The Origin owns connection
// goroutines until Close.
func New(ctx context.Context, rawURL string, opts Options) (*Origin, error) {
	o, err := newOrigin(rawURL, opts)
	if err != nil {
		return nil, err
	}
	s, err := o.connect(ctx)
	if err != nil {
		o.cancel()
		return nil, err
	}
	o.publish(s)
	return o, nil
}

// Open is New for a server that may be down: it checks the URL and
// returns at once, then mounts in the background, retrying with backoff
// (Options.RetryBackoffMin doubling up to Options.MountRetryMax) until it
// succeeds or Close is called. Calls made before then fail fast with an
// error matching ErrNotMounted and backend.ErrUnavailable.
func Open(rawURL string, opts Options) (*Origin, error) {
	o, err := newOrigin(rawURL, opts)
	if err != nil {
		return nil, err
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.mountLoop()
	}()
	return o, nil
}

// mountLoop mounts until it succeeds or the Origin is closed.
func (o *Origin) mountLoop() {
	log := o.opts.Logger
	for failures := 0; ; failures++ {
		if failures > 0 {
			d := o.opts.RetryBackoffMin
			for i := 1; i < failures && d < o.opts.MountRetryMax; i++ {
				d *= 2
			}
			d = min(d, o.opts.MountRetryMax)
			t := time.NewTimer(d/2 + rand.N(d/2+1))
			select {
			case <-o.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(o.ctx, o.opts.DialTimeout+o.opts.CallTimeout)
		s, err := o.connect(ctx)
		cancel()
		if o.ctx.Err() != nil {
			if s != nil {
				s.close(o.opts.Logger, o.rootAuth)
			}
			return
		}
		if err == nil {
			o.publish(s)
			return
		}
		o.observe("mount", err)
		if failures == 0 || failures%10 == 9 {
			log.Warn().Err(err).Str("origin", o.url.String()).Int("attempts", failures+1).
				Msg("nfs origin not reachable; answering NFS3ERR_JUKEBOX until it is")
		}
	}
}

// publish makes s the Origin's session and starts the state monitor.
func (o *Origin) publish(s *session) {
	o.sess.Store(s)
	close(o.mounted)
	o.opts.Logger.Info().Str("origin", s.target.String()).Uint32("rtmax", s.rtmax).Uint32("wtmax", s.wtmax).Msg("nfs origin mounted")
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.monitor(s)
	}()
}

// monitor logs every change of the origin's connection state until Close.
func (o *Origin) monitor(s *session) {
	up := true // publish follows a successful FSINFO
	for {
		if err := s.rpc.WaitState(o.ctx, !up); err != nil {
			return // closed
		}
		up = !up
		if up {
			o.opts.Logger.Info().Str("origin", s.target.String()).Msg("nfs origin up")
		} else {
			o.opts.Logger.Warn().Str("origin", s.target.String()).Msg("nfs origin down: answering NFS3ERR_JUKEBOX until it is back")
		}
	}
}

// connect resolves ports, mounts and reads FSINFO.
func (o *Origin) connect(ctx context.Context) (*session, error) {
	t := o.url
	if t.Port == 0 || t.MountPort == 0 {
		var err error
		if t, err = o.lookupPorts(ctx, t); err != nil {
			return nil, err
		}
	}
	s := &session{target: t}
	var err error
	s.mountC, err = oncrpc.New(o.rpcConfig(t, t.MountPort, 1))
	if err != nil {
		return nil, err
	}
	s.root, err = mnt(ctx, s.mountC, &o.rootAuth, t.Export)
	if err != nil {
		_ = s.mountC.Close() // Close of an oncrpc.Client cannot fail
		return nil, err
	}
	s.rpc, err = oncrpc.New(o.rpcConfig(t, t.Port, o.opts.Conns))
	if err != nil {
		_ = s.mountC.Close()
		return nil, err
	}
	// FSINFO before s is published: call on s directly.
	s.rtmax, s.wtmax = 4096, 4096
	info, err := o.fsinfo(ctx, s, backend.Cred{UID: t.UID, GID: t.GID}, s.root)
	if err != nil {
		s.close(o.opts.Logger, o.rootAuth)
		return nil, fmt.Errorf("nfs origin %s: %w", t, err)
	}
	s.rtmax = min(max(info.RtMax, 4096), o.opts.MaxIOBytes)
	s.wtmax = min(max(info.WtMax, 4096), o.opts.MaxIOBytes)
	return s, nil
}

func (o *Origin) rpcConfig(t Target, port, conns int) oncrpc.Config {
	cfg := oncrpc.DefaultConfig(net.JoinHostPort(t.Host, strconv.Itoa(port)))
	cfg.Conns = conns
	cfg.DialTimeout = o.opts.DialTimeout
	cfg.PrivilegedPort = o.opts.PrivilegedPort
	cfg.MachineName = o.opts.MachineName
	cfg.MaxRecordBytes = int64(o.opts.MaxIOBytes) + 64<<10 + int64(o.opts.ReaddirMaxBytes)
	// A server that went silent is given up on after two call timeouts,
	// so that Up turns false and reconnects start.
	cfg.SilentTimeout = max(10*time.Second, 2*o.opts.CallTimeout)
	cfg.BackoffMax = max(cfg.BackoffMin, o.opts.MountRetryMax)
	cfg.Logger = o.opts.Logger
	return cfg
}

func (o *Origin) lookupPorts(ctx context.Context, t Target) (Target, error) {
	pm, err := oncrpc.New(o.rpcConfig(t, t.PortmapPort, 1))
	if err != nil {
		return t, err
	}
	defer func() { _ = pm.Close() }() // cannot fail
	if t.Port == 0 {
		if t.Port, err = getport(ctx, pm, nfsv3.NFS_PROGRAM_PROGRAM_NUMBER, 3); err != nil {
			return t, err
		}
	}
	if t.MountPort == 0 {
		if t.MountPort, err = getport(ctx, pm, mount.MOUNT_PROGRAM_PROGRAM_NUMBER, mountVers); err != nil {
			return t, err
		}
	}
	return t, nil
}

// close unmounts (best effort, bounded) and stops s's connections.
func (s *session) close(log zerolog.Logger, auth oncrpc.AuthSys) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := umnt(ctx, s.mountC, &auth, s.target.Export); err != nil {
		// UMNT is advisory (RFC 1813 I.5.3); a server that is gone
		// cannot miss it.
		log.Debug().Err(err).Msg("nfs origin: umnt")
	}
	_ = s.mountC.Close() // oncrpc Close cannot fail
	if s.rpc != nil {
		_ = s.rpc.Close()
	}
}

// Close stops mounting (Open), unmounts (best effort, bounded) and stops
// every connection and goroutine.
func (o *Origin) Close() error {
	o.closeOnce.Do(func() {
		o.cancel()
		o.wg.Wait()
		if s := o.sess.Load(); s != nil {
			s.close(o.opts.Logger, o.rootAuth)
		}
	})
	return nil
}

// session returns the mounted session, or an error matching ErrNotMounted
// and backend.ErrUnavailable.
func (o *Origin) session(op string) (*session, error) {
	if s := o.sess.Load(); s != nil {
		return s, nil
	}
	err := fmt.Errorf("nfs %s: %w: %w (%s)", op, backend.ErrUnavailable, ErrNotMounted, o.url)
	o.observe(op, err)
	return nil, err
}

// observe passes a failed call to Options.OnError.
func (o *Origin) observe(op string, err error) {
	if o.opts.OnError != nil {
		o.opts.OnError(op, err)
	}
}

// Up reports whether the export is mounted and a connection to the NFS
// port is up now (for an origin-state gauge; it does not touch the
// network).
func (o *Origin) Up() bool {
	s := o.sess.Load()
	return s != nil && s.rpc.Connected()
}

// WaitConnected blocks until the export is mounted and a connection to
// the NFS port is up (or ctx is done). Health checks use it to learn that
// the origin is back.
func (o *Origin) WaitConnected(ctx context.Context) error {
	select {
	case <-o.mounted:
	case <-ctx.Done():
		return wrap("wait connected", ctx.Err())
	case <-o.ctx.Done():
		return wrap("wait connected", oncrpc.ErrClosed)
	}
	if err := o.sess.Load().rpc.WaitConnected(ctx); err != nil {
		return wrap("wait connected", err)
	}
	return nil
}

// Target returns what the origin URL named, ports resolved once mounted.
func (o *Origin) Target() Target {
	if s := o.sess.Load(); s != nil {
		return s.target
	}
	return o.url
}

// Exports lists the server's exports (MOUNT EXPORT).
func (o *Origin) Exports(ctx context.Context) ([]Export, error) {
	s, err := o.session("export")
	if err != nil {
		return nil, err
	}
	return exports(ctx, s.mountC)
}
