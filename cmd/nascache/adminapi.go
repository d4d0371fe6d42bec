package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/cachefs"
)

// The admin API is JSON under /v1 on admin_listen:
//
//	POST   /v1/warm       {"paths": [...], "pin": bool, "parallelism": N} -> 202 {"id": ...}
//	GET    /v1/warm       every job in the table, oldest first
//	GET    /v1/warm/{id}  one job's progress (warmJobView)
//	DELETE /v1/warm/{id}  cancel it (202 while it stops, 200 if it had finished)
//	GET    /v1/status     cache figures, exports, uptime, version (statusView)
//
// Errors are {"error": "..."} with a 4xx/5xx status. The API has no
// authentication: anyone who reaches admin_listen can start and cancel
// jobs. It binds to localhost by default and must not be exposed beyond
// the node.

// Limits on what one request may ask.
const (
	maxWarmBodyBytes   = 1 << 20
	maxWarmPaths       = 1000
	maxWarmParallelism = 1024
	defaultMaxWarmJobs = 64
	defaultMaxRunning  = 4
)

// warmRequest is the body of POST /v1/warm.
type warmRequest struct {
	// Paths are client paths, /EXPORTPATH/rel/path.
	Paths []string `json:"paths"`
	// Pin keeps the warmed data from being evicted.
	Pin bool `json:"pin"`
	// Parallelism is how many files are warmed at once; 0: the node's
	// default.
	Parallelism int `json:"parallelism"`
}

// warmStarted is the reply to POST /v1/warm.
type warmStarted struct {
	ID string `json:"id"`
}

// warmJobView is a job's progress. Totals grow while the trees are walked;
// rates are averages since the start and the ETA covers what has been
// found so far.
type warmJobView struct {
	ID             string     `json:"id"`
	State          string     `json:"state"` // running, done, failed, cancelled
	Paths          []string   `json:"paths"`
	Pin            bool       `json:"pin"`
	Parallelism    int        `json:"parallelism"`
	PathsDone      int        `json:"paths_done"`
	FilesDone      int64      `json:"files_done"`
	FilesTotal     int64      `json:"files_total"`
	BytesDone      int64      `json:"bytes_done"`
	BytesTotal     int64      `json:"bytes_total"`
	Errors         int64      `json:"errors"`
	ElapsedSeconds float64    `json:"elapsed_seconds"`
	BytesPerSecond float64    `json:"bytes_per_second"`
	FilesPerSecond float64    `json:"files_per_second"`
	ETASeconds     *float64   `json:"eta_seconds,omitempty"` // running jobs, once there is a rate
	StartedAt      time.Time  `json:"started_at"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	Error          string     `json:"error,omitempty"` // why a job failed
}

// statusView is the reply to GET /v1/status.
type statusView struct {
	Version         string         `json:"version"`
	StartedAt       time.Time      `json:"started_at"`
	UptimeSeconds   float64        `json:"uptime_seconds"`
	Cache           *cacheStatus   `json:"cache"` // null when the node has no data cache
	Exports         []exportStatus `json:"exports"`
	WarmJobsRunning int            `json:"warm_jobs_running"`
}

// cacheStatus is the data cache's figures.
type cacheStatus struct {
	CachedBytes   int64 `json:"cached_bytes"`
	CapacityBytes int64 `json:"capacity_bytes"`
	// EffectiveCapacityBytes is less than CapacityBytes while the disk
	// holding the cache has less room than cache_size.
	EffectiveCapacityBytes int64 `json:"effective_capacity_bytes"`
	// DiskFullWrites counts chunk writes the disk refused (ENOSPC, EDQUOT).
	DiskFullWrites int64 `json:"disk_full_writes"`
	// OpenFiles is how many chunk files the store keeps open.
	OpenFiles   int   `json:"open_files"`
	PinnedBytes int64 `json:"pinned_bytes"`
	Evictions   int64 `json:"evictions"`
	// CorruptChunks counts chunks that failed their checksum on read and
	// were dropped (and fetched again from the origin).
	CorruptChunks int64 `json:"corrupt_chunks"`
	// Hits and Misses count chunk reads.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// CacheBytesServed and OriginBytesServed split the bytes READs
	// answered by source.
	CacheBytesServed  int64 `json:"cache_bytes_served"`
	OriginBytesServed int64 `json:"origin_bytes_served"`
	// HitRatio is hits/(hits+misses), absent before the first read.
	HitRatio *float64 `json:"hit_ratio,omitempty"`
	// OriginLatencySeconds is the mean origin call latency, when known.
	OriginLatencySeconds *float64 `json:"origin_latency_seconds,omitempty"`
}

// exportStatus is one export's state.
type exportStatus struct {
	Path   string `json:"path"`
	Origin string `json:"origin"` // URL, any password redacted
	// State is up, down or unknown (the node does not track it).
	State string `json:"state"`
	// Consistency is the export's freshness mode, when known.
	Consistency          string   `json:"consistency,omitempty"`
	OriginLatencySeconds *float64 `json:"origin_latency_seconds,omitempty"`
}

// Export states.
const (
	exportUp      = "up"
	exportDown    = "down"
	exportUnknown = "unknown"
)

// nodeStats is what the node knows of its cache and origins right now;
// wire.go builds it from cachefs.FS.Stats.
type nodeStats struct {
	// Cache is nil when the node has no data cache.
	Cache *cacheStatus
	// Exports by export path; an export missing here is "unknown".
	Exports map[string]exportHealth
}

// exportHealth is one export's state.
type exportHealth struct {
	Up                   bool
	Consistency          string
	OriginLatencySeconds *float64
}

// statser is the file system's figures: *cachefs.FS.
type statser interface {
	Stats() cachefs.Stats
}

var _ statser = (*cachefs.FS)(nil)

// statsSource returns the Stats of the admin API for a node: cache figures
// from fs, and each export's state from its origin (origins[i] serves
// exports[i]); an origin that cannot tell (a local directory) is up.
func statsSource(fs statser, exports []ExportConfig, origins []backend.Origin) func() nodeStats {
	return func() nodeStats {
		st := fs.Stats()
		ns := nodeStats{Exports: make(map[string]exportHealth, len(exports))}
		if st.DataCache {
			c := &cacheStatus{
				CachedBytes: st.CachedBytes, CapacityBytes: st.CapacityBytes, PinnedBytes: st.PinnedBytes,
				EffectiveCapacityBytes: st.EffectiveCapacityBytes, DiskFullWrites: int64(st.DiskFullWrites), OpenFiles: st.OpenFiles,
				Evictions: int64(st.Evictions), CorruptChunks: int64(st.CorruptChunks),
				Hits: int64(st.ChunkHits), Misses: int64(st.ChunkMisses),
				CacheBytesServed: int64(st.CacheBytesServed), OriginBytesServed: int64(st.OriginBytesServed),
			}
			if st.OriginFetches > 0 {
				lat := st.OriginReadAvg.Seconds()
				c.OriginLatencySeconds = &lat
			}
			ns.Cache = c
		}
		modes := make(map[string]string, len(st.Exports))
		for _, e := range st.Exports {
			modes[e.Path] = e.Consistency
		}
		for i, e := range exports {
			h := exportHealth{Up: true, Consistency: modes[e.Path]}
			if i < len(origins) {
				if r, ok := origins[i].(upReporter); ok {
					h.Up = r.Up()
				}
			}
			ns.Exports[e.Path] = h
		}
		return ns
	}
}

// adminAPIConfig is what the /v1 API serves from.
type adminAPIConfig struct {
	// Warmer warms trees; nil makes POST /v1/warm answer 501.
	Warmer warmer
	// Stats returns the node's figures for /v1/status; nil reports none.
	Stats func() nodeStats
	// Exports are the configured exports (path and origin are used).
	Exports []ExportConfig
	// Version names the build.
	Version string
	// Started is when the node started (uptime).
	Started time.Time
	// MaxJobs and MaxRunning bound the job table (0: defaults).
	MaxJobs, MaxRunning int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand makes job ids; nil means crypto/rand.
	Rand io.Reader
}

// adminAPI serves /v1. It owns the warm jobs: Close stops them.
type adminAPI struct {
	cfg     adminAPIConfig
	jobs    *warmJobs
	exports []exportStatus // configured order, origins redacted
	byLen   []string       // export paths, longest first
}

// newAdminAPI builds the API; it starts nothing.
func newAdminAPI(cfg adminAPIConfig, logger zerolog.Logger) *adminAPI {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = defaultMaxWarmJobs
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = defaultMaxRunning
	}
	a := &adminAPI{cfg: cfg}
	for _, e := range cfg.Exports {
		a.exports = append(a.exports, exportStatus{Path: e.Path, Origin: redactURL(e.Origin)})
		a.byLen = append(a.byLen, e.Path)
	}
	slices.SortStableFunc(a.byLen, func(x, y string) int { return len(y) - len(x) })
	a.jobs = newWarmJobs(cfg.Warmer, warmJobsConfig{
		MaxJobs: cfg.MaxJobs, MaxRunning: cfg.MaxRunning, Now: cfg.Now, Rand: cfg.Rand,
	}, logger)
	return a
}

// register adds the /v1 routes to mux.
func (a *adminAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/warm", a.postWarm)
	mux.HandleFunc("GET /v1/warm", a.listWarm)
	mux.HandleFunc("GET /v1/warm/{id}", a.getWarm)
	mux.HandleFunc("DELETE /v1/warm/{id}", a.deleteWarm)
	mux.HandleFunc("GET /v1/status", a.getStatus)
}

// Close cancels every warm job and waits for them to stop.
func (a *adminAPI) Close() { a.jobs.Close() }

func (a *adminAPI) postWarm(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Warmer == nil {
		writeError(w, errNoWarmer)
		return
	}
	var req warmRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxWarmBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: body is not a warm request: %w", errBadRequest, err))
		return
	}
	if dec.More() {
		writeError(w, fmt.Errorf("%w: body holds more than one JSON value", errBadRequest))
		return
	}
	targets, err := a.targets(req)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := a.jobs.start(r.Context(), targets, warmOptions{Pin: req.Pin, Parallelism: req.Parallelism})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/warm/"+id)
	writeJSON(w, http.StatusAccepted, warmStarted{ID: id})
}

// targets checks a warm request and maps its paths onto exports.
func (a *adminAPI) targets(req warmRequest) ([]warmTarget, error) {
	switch {
	case len(req.Paths) == 0:
		return nil, fmt.Errorf("%w: paths is empty: name at least one /EXPORT/path", errBadRequest)
	case len(req.Paths) > maxWarmPaths:
		return nil, fmt.Errorf("%w: %d paths, at most %d per job", errBadRequest, len(req.Paths), maxWarmPaths)
	case req.Parallelism < 0 || req.Parallelism > maxWarmParallelism:
		return nil, fmt.Errorf("%w: parallelism %d is not in 0..%d (0: the node's default)", errBadRequest, req.Parallelism, maxWarmParallelism)
	}
	out := make([]warmTarget, 0, len(req.Paths))
	for _, p := range req.Paths {
		t, err := a.resolve(p)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// resolve maps a client path /EXPORTPATH/rel/path to its export (the
// longest export path that is a whole-element prefix) and the path inside
// it.
func (a *adminAPI) resolve(p string) (warmTarget, error) {
	if !strings.HasPrefix(p, "/") {
		return warmTarget{}, fmt.Errorf("%w: path %q is not absolute: want /EXPORT/path", errBadRequest, p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return warmTarget{}, fmt.Errorf("%w: path %q holds a NUL byte", errBadRequest, p)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return warmTarget{}, fmt.Errorf("%w: path %q holds a .. element", errBadRequest, p)
	}
	p = path.Clean(p)
	for _, e := range a.byLen {
		var rest string
		switch {
		case p == e:
		case e == "/":
			rest = p[1:]
		case strings.HasPrefix(p, e+"/"):
			rest = p[len(e)+1:]
		default:
			continue
		}
		if rest == "" {
			rest = "."
		}
		return warmTarget{clientPath: p, export: e, rel: rest}, nil
	}
	return warmTarget{}, fmt.Errorf("%w: no export holds %s (exports: %s)", errBadRequest, p, strings.Join(a.exportPaths(), ", "))
}

// exportPaths lists the export paths in config order.
func (a *adminAPI) exportPaths() []string {
	out := make([]string, 0, len(a.exports))
	for _, e := range a.exports {
		out = append(out, e.Path)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

func (a *adminAPI) listWarm(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.jobs.list())
}

func (a *adminAPI) getWarm(w http.ResponseWriter, r *http.Request) {
	v, ok := a.jobs.view(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no warm job %q (finished jobs are forgotten oldest first)", r.PathValue("id"))})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *adminAPI) deleteWarm(w http.ResponseWriter, r *http.Request) {
	v, ok := a.jobs.cancel(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no warm job %q", r.PathValue("id"))})
		return
	}
	code := http.StatusOK
	if v.State == jobRunning {
		code = http.StatusAccepted // it stops once its current file calls return
	}
	writeJSON(w, code, v)
}

func (a *adminAPI) getStatus(w http.ResponseWriter, _ *http.Request) {
	now := a.cfg.Now()
	v := statusView{
		Version:         a.cfg.Version,
		StartedAt:       a.cfg.Started,
		UptimeSeconds:   now.Sub(a.cfg.Started).Seconds(),
		Exports:         slices.Clone(a.exports),
		WarmJobsRunning: a.jobs.running(),
	}
	var st nodeStats
	if a.cfg.Stats != nil {
		st = a.cfg.Stats()
	}
	if st.Cache != nil {
		c := *st.Cache
		if n := c.Hits + c.Misses; n > 0 {
			r := float64(c.Hits) / float64(n)
			c.HitRatio = &r
		}
		v.Cache = &c
	}
	for i := range v.Exports {
		e := &v.Exports[i]
		h, ok := st.Exports[e.Path]
		switch {
		case !ok:
			e.State = exportUnknown
		case h.Up:
			e.State = exportUp
		default:
			e.State = exportDown
		}
		e.Consistency = h.Consistency
		e.OriginLatencySeconds = h.OriginLatencySeconds
	}
	writeJSON(w, http.StatusOK, v)
}

// apiError is the body of every error reply.
type apiError struct {
	Error string `json:"error"`
}

// apiStatus maps an API error to its HTTP status.
func apiStatus(err error) int {
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errTooManyJobs):
		return http.StatusTooManyRequests
	case errors.Is(err, errAdminClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, errNoWarmer):
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// writeError replies with err's status and message. The message leaves
// out the sentinel's "nascache: ..." prefix, which only names the class.
func writeError(w http.ResponseWriter, err error) {
	msg := err.Error()
	for _, s := range []error{errBadRequest, errTooManyJobs} {
		if errors.Is(err, s) {
			msg = strings.TrimPrefix(msg, s.Error()+": ")
		}
	}
	writeJSON(w, apiStatus(err), apiError{Error: msg})
}

// writeJSON replies with v as indented JSON. A failed write means the
// client has gone; there is nobody to tell.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Every reply type here marshals; failing is a broken invariant.
		panic(fmt.Sprintf("admin API: marshal %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n')) // the client went away: nothing to do
}

// redactURL hides a password in an origin URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
