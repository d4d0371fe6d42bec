package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Server serves NFSv3 and MOUNT v3 over one TCP listener, and optionally a
// portmapper. New starts nothing; Listen binds; Run serves until its
// context is cancelled and returns after every goroutine it started has
// ended.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	main    *rpcHandler
	pool    *bufferPool

	// Set by Listen, read-only afterwards.
	ln     net.Listener
	pmapLn net.Listener
	pmapPC *net.UDPConn

	// mu guards conns and running.
	mu      sync.Mutex
	conns   map[*conn]struct{}
	running bool
}

// New checks cfg and builds a Server over fs. It opens nothing.
func New(cfg Config, fs FS, logger zerolog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new nfs server: %w", err)
	}
	if fs == nil {
		return nil, fmt.Errorf("new nfs server: nil FS: %w", ErrInvalidConfig)
	}
	handles, err := newHandleCodec(cfg.HandleKey)
	if err != nil {
		return nil, fmt.Errorf("new nfs server: %w", err)
	}
	byID := make(map[uint16]*Export, len(cfg.Exports))
	list := make([]*Export, 0, len(cfg.Exports))
	for i := range cfg.Exports {
		e := cfg.Exports[i]
		e.Clients = append(e.Clients[:0:0], e.Clients...)
		byID[e.ID] = &e
		list = append(list, &e)
	}
	cfg.Exports = nil
	cfg.HandleKey = nil
	nfsProg, err := newNFSProgram(fs, handles, byID, logger)
	if err != nil {
		return nil, fmt.Errorf("new nfs server: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("new nfs server: %w", err)
	}
	mountProg := &mountProgram{fs: fs, handles: handles, exports: list, log: logger, mounts: make(map[mountEntry]struct{})}
	pool := &bufferPool{}
	return &Server{
		cfg:     cfg,
		log:     logger,
		metrics: m,
		pool:    pool,
		main: &rpcHandler{
			nfs:     nfsv3.NewNfsProgramService(nfsProg),
			mount:   mount.NewMountProgramService(mountProg),
			nfsProg: nfsProg,
			pool:    pool,
			log:     rpcLog{logger},
		},
		conns: make(map[*conn]struct{}),
	}, nil
}

// Listen binds the NFS listener and, if configured, the portmapper's TCP
// and UDP sockets. When it returns nil the server accepts connections
// (they queue until Run), so readiness can be signalled.
func (s *Server) Listen() error {
	if s.ln != nil {
		return errors.New("nfsserver: Listen called twice")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen nfs on %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.PortmapListen != "" {
		pl, err := net.Listen("tcp", s.cfg.PortmapListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen portmap on %s: %w", s.cfg.PortmapListen, err)
		}
		ua, err := net.ResolveUDPAddr("udp", pl.Addr().String())
		if err == nil {
			s.pmapPC, err = net.ListenUDP("udp", ua)
		}
		if err != nil {
			ln.Close()
			pl.Close()
			return fmt.Errorf("listen portmap udp on %s: %w", s.cfg.PortmapListen, err)
		}
		s.pmapLn = pl
	}
	s.ln = ln
	return nil
}

// Close releases the listeners of a Server whose Run was never started
// (for a caller that fails after Listen). After Run has started it does
// nothing: cancel Run's context instead.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.ln == nil {
		return nil
	}
	s.running = true // a later Run must not serve closed listeners
	err := s.ln.Close()
	if s.pmapLn != nil {
		err = errors.Join(err, s.pmapLn.Close(), s.pmapPC.Close())
	}
	return err
}

// Addr is the NFS/MOUNT listener's address, nil before Listen.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// PortmapAddr is the portmapper's TCP address (UDP uses the same), nil
// when it is off or before Listen.
func (s *Server) PortmapAddr() net.Addr {
	if s.pmapLn == nil {
		return nil
	}
	return s.pmapLn.Addr()
}

// Run serves until ctx is cancelled, then closes the listeners and every
// connection and returns once all goroutines have ended. It returns nil
// after a cancellation, or the error that stopped the NFS listener.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		return ErrNotListening
	}
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("nfsserver: Run called twice")
	}
	s.running = true
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var acceptErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		acceptErr = s.accept(ctx, &wg, s.ln, s.main)
		cancel()
	}()
	if s.pmapLn != nil {
		pm := &rpcHandler{
			portmap: &portmapper{port: uint32(tcpPort(s.ln.Addr())), selfPort: uint32(tcpPort(s.pmapLn.Addr()))},
			pool:    s.pool,
			log:     rpcLog{s.log},
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.accept(ctx, &wg, s.pmapLn, pm); err != nil {
				s.log.Error().Err(err).Msg("portmap listener failed")
			}
		}()
		go func() {
			defer wg.Done()
			s.serveUDP(ctx, s.pmapPC, pm)
		}()
	}
	<-ctx.Done()
	s.ln.Close()
	if s.pmapLn != nil {
		s.pmapLn.Close()
		s.pmapPC.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	wg.Wait()
	return acceptErr
}

// accept runs the accept loop of ln; each connection is served by a
// goroutine counted in wg. It returns nil once ctx is cancelled.
func (s *Server) accept(ctx context.Context, wg *sync.WaitGroup, ln net.Listener, h *rpcHandler) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isClosed(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			// Out of file descriptors and the like: wait and retry
			// rather than stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		c := &conn{nc: nc, peer: peerAddr(nc.RemoteAddr())}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.metrics.connections.Inc()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c, h)
			nc.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			s.metrics.connections.Dec()
		}()
	}
}

func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func tcpPort(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	return 0
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	connections  prometheus.Gauge
	bytesRead    prometheus.Counter
	bytesWritten prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "nascache", Subsystem: "nfs", Name: "requests_total",
			Help: "RPC calls answered, by program, procedure and status.",
		}, []string{"program", "procedure", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "nascache", Subsystem: "nfs", Name: "request_duration_seconds",
			Help:    "Time from a call's record being read to its reply being ready, by procedure.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"program", "procedure"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "nascache", Subsystem: "nfs", Name: "open_connections",
			Help: "Client TCP connections open (NFS and portmap).",
		}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "nascache", Subsystem: "nfs", Name: "read_bytes_total",
			Help: "Bytes of RPC records read from clients.",
		}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "nascache", Subsystem: "nfs", Name: "written_bytes_total",
			Help: "Bytes of RPC replies written to clients.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.connections, m.bytesRead, m.bytesWritten} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(rp *reply, d time.Duration) {
	m.requests.WithLabelValues(rp.program, rp.procedure, rp.status).Inc()
	m.latency.WithLabelValues(rp.program, rp.procedure).Observe(d.Seconds())
}

var nfsProcNames = [...]string{
	"NULL", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "READLINK", "READ", "WRITE",
	"CREATE", "MKDIR", "SYMLINK", "MKNOD", "REMOVE", "RMDIR", "RENAME", "LINK",
	"READDIR", "READDIRPLUS", "FSSTAT", "FSINFO", "PATHCONF", "COMMIT",
}

var mountProcNames = [...]string{"NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"}

var portmapProcNames = [...]string{"NULL", "SET", "UNSET", "GETPORT", "DUMP", "CALLIT"}

func programName(prog uint32) string {
	switch prog {
	case progNFS:
		return "nfs"
	case progMount:
		return "mount"
	case progPortmap:
		return "portmap"
	}
	return "other"
}

// procedureName is a bounded metric label: unknown procedures and
// versions share one value.
func procedureName(prog, vers, proc uint32) string {
	var names []string
	switch {
	case prog == progNFS && vers == 3:
		names = nfsProcNames[:]
	case prog == progMount && vers == 3:
		names = mountProcNames[:]
	case prog == progPortmap && vers == pmapVers:
		names = portmapProcNames[:]
	}
	if int(proc) < len(names) {
		return names[proc]
	}
	return "other"
}
