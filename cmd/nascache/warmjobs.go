package main

// Lock order: warmJobs.mu is the only lock in this file; the warmer's
// progress callback takes it, so it is never held while calling the warmer.

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/cachefs"
)

// warmOptions and warmProgress are cachefs's: Pin, Parallelism (0: the
// file system's default) and the counts of a warm, whose totals grow
// while the tree is walked.
type (
	warmOptions  = cachefs.WarmOptions
	warmProgress = cachefs.WarmProgress
)

// addProgress sums two counts.
func addProgress(p, q warmProgress) warmProgress {
	return warmProgress{
		FilesDone:  p.FilesDone + q.FilesDone,
		FilesTotal: p.FilesTotal + q.FilesTotal,
		BytesDone:  p.BytesDone + q.BytesDone,
		BytesTotal: p.BytesTotal + q.BytesTotal,
		Errors:     p.Errors + q.Errors,
	}
}

// warmer loads a tree of an export into the cache: *cachefs.FS. path is
// relative to the export root, slash-separated, "." for the root.
// progress may be called from any goroutine until Warm returns; Warm
// returns the counts, also when it fails or is cancelled.
type warmer interface {
	Warm(ctx context.Context, exportPath, path string, opts warmOptions, progress func(warmProgress)) (warmProgress, error)
}

var _ warmer = (*cachefs.FS)(nil)

// warmTarget is one client path mapped onto an export.
type warmTarget struct {
	clientPath string // as the client wrote it, cleaned: /data/sub
	export     string // /data
	rel        string // sub, or "." for the export root
}

// Job states, as the API reports them.
const (
	jobRunning   = "running"
	jobDone      = "done"
	jobFailed    = "failed"
	jobCancelled = "cancelled"
)

// warmJobsConfig bounds and feeds a warmJobs.
type warmJobsConfig struct {
	// MaxJobs is how many jobs the table keeps, running or finished; when
	// it is full the oldest finished job is forgotten.
	MaxJobs int
	// MaxRunning is how many jobs may run at once.
	MaxRunning int
	// Now is the clock (rates, ETAs, timestamps).
	Now func() time.Time
	// Rand makes job ids; it is read with the table locked.
	Rand io.Reader
}

// warmJobs runs warm jobs and keeps a bounded table of them. Jobs run in
// goroutines it owns: Close cancels them and waits for them.
type warmJobs struct {
	warmer warmer
	cfg    warmJobsConfig
	logger zerolog.Logger
	wg     sync.WaitGroup // one count per job goroutine

	mu     sync.Mutex // guards closed, jobs, order and every job's mutable fields
	closed bool
	jobs   map[string]*warmJob
	order  []string // job ids, oldest first
}

// warmJob is one POST /v1/warm.
type warmJob struct {
	id      string
	targets []warmTarget
	opts    warmOptions
	started time.Time
	cancel  context.CancelFunc

	// Guarded by warmJobs.mu:
	state     string
	errMsg    string
	finished  time.Time
	pathsDone int          // targets finished
	done      warmProgress // sum over finished targets
	cur       warmProgress // the running target's latest counts
}

func newWarmJobs(w warmer, cfg warmJobsConfig, logger zerolog.Logger) *warmJobs {
	return &warmJobs{warmer: w, cfg: cfg, logger: logger, jobs: map[string]*warmJob{}}
}

// start registers a job over targets and runs it in a goroutine. The job
// outlives ctx's cancellation (a request's) but keeps its values.
func (j *warmJobs) start(ctx context.Context, targets []warmTarget, opts warmOptions) (string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return "", errAdminClosed
	}
	// Under mu: an injected Rand need not be safe for concurrent use.
	var raw [8]byte
	if _, err := io.ReadFull(j.cfg.Rand, raw[:]); err != nil {
		return "", fmt.Errorf("warm job id: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if _, dup := j.jobs[id]; dup {
		return "", fmt.Errorf("warm job id %s: %w", id, errJobIDClash)
	}
	running := 0
	for _, job := range j.jobs {
		if job.state == jobRunning {
			running++
		}
	}
	if running >= j.cfg.MaxRunning {
		return "", fmt.Errorf("%w: %d warm job(s) already running (at most %d)", errTooManyJobs, running, j.cfg.MaxRunning)
	}
	if len(j.jobs) >= j.cfg.MaxJobs && !j.forgetOldestFinishedLocked() {
		return "", fmt.Errorf("%w: the job table holds %d running jobs", errTooManyJobs, len(j.jobs))
	}
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	job := &warmJob{id: id, targets: targets, opts: opts, started: j.cfg.Now(), cancel: cancel, state: jobRunning}
	j.jobs[id] = job
	j.order = append(j.order, id)
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer cancel()
		j.run(jctx, job)
	}()
	return id, nil
}

// forgetOldestFinishedLocked drops the oldest finished job and reports
// whether there was one.
func (j *warmJobs) forgetOldestFinishedLocked() bool {
	for i, id := range j.order {
		if j.jobs[id].state != jobRunning {
			delete(j.jobs, id)
			j.order = append(j.order[:i], j.order[i+1:]...)
			return true
		}
	}
	return false
}

// run warms the job's targets one after the other and records the outcome.
func (j *warmJobs) run(ctx context.Context, job *warmJob) {
	log := j.logger.With().Str("job", job.id).Logger()
	log.Info().Int("paths", len(job.targets)).Bool("pin", job.opts.Pin).Int("parallelism", job.opts.Parallelism).Msg("warm started")
	var err error
	for i, t := range job.targets {
		if ctx.Err() != nil {
			break
		}
		var p warmProgress
		p, err = j.warmer.Warm(ctx, t.export, t.rel, job.opts, func(p warmProgress) {
			j.mu.Lock()
			defer j.mu.Unlock()
			// A late call for an earlier target must not count twice.
			if job.state == jobRunning && job.pathsDone == i {
				job.cur = p
			}
		})
		j.mu.Lock()
		job.done = addProgress(job.done, p)
		job.cur = warmProgress{}
		job.pathsDone++
		j.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("%s: %w", t.clientPath, err)
			break
		}
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	job.finished = j.cfg.Now()
	switch {
	case ctx.Err() != nil:
		job.state = jobCancelled
	case err != nil:
		job.state = jobFailed
		job.errMsg = err.Error()
	default:
		job.state = jobDone
	}
	ev := log.Info()
	if job.state == jobFailed {
		ev = log.Warn().Str("error", job.errMsg)
	}
	ev.Str("state", job.state).Int64("files", job.done.FilesDone).Int64("bytes", job.done.BytesDone).
		Int64("errors", job.done.Errors).Dur("elapsed", job.finished.Sub(job.started)).Msg("warm finished")
}

// view returns the job's state as the API shows it, or false if the table
// does not hold id.
func (j *warmJobs) view(id string) (warmJobView, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.jobs[id]
	if !ok {
		return warmJobView{}, false
	}
	return job.viewLocked(j.cfg.Now()), true
}

// list returns every job in the table, oldest first.
func (j *warmJobs) list() []warmJobView {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.cfg.Now()
	out := make([]warmJobView, 0, len(j.order))
	for _, id := range j.order {
		out = append(out, j.jobs[id].viewLocked(now))
	}
	return out
}

// running counts the jobs that run.
func (j *warmJobs) running() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, job := range j.jobs {
		if job.state == jobRunning {
			n++
		}
	}
	return n
}

// cancel asks job id to stop; it stops once its warmer returns. Cancelling
// a finished job changes nothing.
func (j *warmJobs) cancel(id string) (warmJobView, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.jobs[id]
	if !ok {
		return warmJobView{}, false
	}
	job.cancel()
	return job.viewLocked(j.cfg.Now()), true
}

// Close cancels every job, refuses new ones and waits until every job
// goroutine has returned.
func (j *warmJobs) Close() {
	j.mu.Lock()
	j.closed = true
	for _, job := range j.jobs {
		job.cancel()
	}
	j.mu.Unlock()
	j.wg.Wait()
}

// viewLocked computes the job's API view at now.
func (job *warmJob) viewLocked(now time.Time) warmJobView {
	p := addProgress(job.done, job.cur)
	v := warmJobView{
		ID:          job.id,
		State:       job.state,
		Pin:         job.opts.Pin,
		Parallelism: job.opts.Parallelism,
		PathsDone:   job.pathsDone,
		FilesDone:   p.FilesDone,
		FilesTotal:  p.FilesTotal,
		BytesDone:   p.BytesDone,
		BytesTotal:  p.BytesTotal,
		Errors:      p.Errors,
		StartedAt:   job.started,
		Error:       job.errMsg,
	}
	for _, t := range job.targets {
		v.Paths = append(v.Paths, t.clientPath)
	}
	end := now
	if job.state != jobRunning {
		end = job.finished
		v.FinishedAt = &job.finished
	}
	elapsed := end.Sub(job.started).Seconds()
	v.ElapsedSeconds = elapsed
	if elapsed > 0 {
		v.BytesPerSecond = float64(p.BytesDone) / elapsed
		v.FilesPerSecond = float64(p.FilesDone) / elapsed
	}
	if job.state == jobRunning {
		v.ETASeconds = eta(p, v.BytesPerSecond, v.FilesPerSecond)
	}
	return v
}

// eta estimates the seconds left from the average rates so far: by bytes
// when byte totals are known, else by files; nil when there is no basis
// yet. It covers what the walk has found so far.
func eta(p warmProgress, bytesPerSec, filesPerSec float64) *float64 {
	var left float64
	switch {
	case p.BytesTotal > 0 && bytesPerSec > 0:
		left = float64(max(p.BytesTotal-p.BytesDone, 0)) / bytesPerSec
	case p.FilesTotal > 0 && filesPerSec > 0:
		left = float64(max(p.FilesTotal-p.FilesDone, 0)) / filesPerSec
	default:
		return nil
	}
	if math.IsInf(left, 0) || math.IsNaN(left) {
		return nil
	}
	return &left
}
