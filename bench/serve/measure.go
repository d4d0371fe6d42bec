package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs"
)

// readChunkBytes is the size of one READ of the sequential reads.
const readChunkBytes = 1 << 20

// metric names one measurement.
type metric struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
	// run measures t once and returns the figure in Unit.
	run func(ctx context.Context, t *target) (float64, error) `json:"-"`
}

// target is one mounted server and what the metrics work on.
type target struct {
	o             *nfs.Origin
	dir           backend.Handle
	handles       []backend.Handle // dir and its entries: GETATTR goes round them
	names         []string         // entries of dir: LOOKUP goes round them
	file          backend.Handle
	fileSizeBytes uint64
}

// metrics returns the measurements of a run, in the order they are taken.
func metrics(cfg config) []metric {
	ms := []metric{
		{Name: fmt.Sprintf("GETATTR, %d outstanding", cfg.outstanding), Unit: "ops/s",
			run: func(ctx context.Context, t *target) (float64, error) {
				return callRate(ctx, cfg.outstanding, cfg.duration, func(ctx context.Context, i uint64) error {
					_, err := t.o.GetAttr(ctx, backend.Cred{}, t.handles[i%uint64(len(t.handles))])
					return err
				})
			}},
		{Name: fmt.Sprintf("LOOKUP, %d outstanding", cfg.outstanding), Unit: "ops/s",
			run: func(ctx context.Context, t *target) (float64, error) {
				return callRate(ctx, cfg.outstanding, cfg.duration, func(ctx context.Context, i uint64) error {
					_, _, err := t.o.Lookup(ctx, backend.Cred{}, t.dir, t.names[i%uint64(len(t.names))])
					return err
				})
			}},
	}
	for _, depth := range cfg.readDepths {
		ms = append(ms, metric{Name: fmt.Sprintf("read %s, %d x 1 MiB outstanding", cfg.file, depth), Unit: "MiB/s",
			run: func(ctx context.Context, t *target) (float64, error) {
				return readRate(ctx, t, depth)
			}})
	}
	return ms
}

// measureAll mounts both servers and takes every metric of every round,
// server A then server B each time. results[m][s] are the figures of
// metric m on server s, one per round.
func measureAll(ctx context.Context, cfg config, log io.Writer) ([][2][]float64, error) {
	var ts [2]*target
	for i, s := range cfg.servers {
		t, err := open(ctx, cfg, s)
		if err != nil {
			return nil, err
		}
		defer func() { _ = t.o.Close() }() // a benchmark has nothing to do about a failed unmount
		ts[i] = t
	}
	ms := metrics(cfg)
	res := make([][2][]float64, len(ms))
	for round := range cfg.rounds {
		for mi, m := range ms {
			for si, t := range ts {
				v, err := m.run(ctx, t)
				if err != nil {
					return nil, fmt.Errorf("%s on %s: %w", m.Name, cfg.servers[si].Name, err)
				}
				res[mi][si] = append(res[mi][si], v)
				fmt.Fprintf(log, "round %d  %-40s %-10s %10.1f %s\n", round+1, m.Name, cfg.servers[si].Name, v, m.Unit)
			}
		}
	}
	return res, nil
}

// open mounts s and finds the handles the metrics use.
func open(ctx context.Context, cfg config, s server) (*target, error) {
	o, err := nfs.New(ctx, s.URL, nfs.Options{Conns: cfg.conns, MaxConcurrency: max(cfg.outstanding, 16)})
	if err != nil {
		return nil, fmt.Errorf("mount %s (%s): %w", s.Name, s.URL, err)
	}
	t, err := find(ctx, o, cfg.dir, cfg.file)
	if err != nil {
		_ = o.Close() // the find error is the one to report
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	return t, nil
}

func find(ctx context.Context, o *nfs.Origin, dir, file string) (*target, error) {
	root, _, err := o.Root(ctx)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	t := &target{o: o}
	if t.dir, _, err = walk(ctx, o, root, dir); err != nil {
		return nil, fmt.Errorf("lookup %q: %w", dir, err)
	}
	t.handles = append(t.handles, t.dir)
	err = o.ReadDir(ctx, backend.Cred{}, t.dir, func(e backend.DirEntry) bool {
		t.handles = append(t.handles, e.Handle)
		t.names = append(t.names, e.Name)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("readdir %q: %w", dir, err)
	}
	if len(t.names) == 0 {
		return nil, fmt.Errorf("%q: %w", dir, errNoHandles)
	}
	var a backend.Attr
	if t.file, a, err = walk(ctx, o, root, file); err != nil {
		return nil, fmt.Errorf("lookup %q: %w", file, err)
	}
	t.fileSizeBytes = a.SizeBytes
	return t, nil
}

// walk looks up the slash-separated path p from h ("" is h itself).
func walk(ctx context.Context, o *nfs.Origin, h backend.Handle, p string) (backend.Handle, backend.Attr, error) {
	var a backend.Attr
	for name := range strings.SplitSeq(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		var err error
		if h, a, err = o.Lookup(ctx, backend.Cred{}, h, name); err != nil {
			return nil, a, err
		}
	}
	return h, a, nil
}

// callRate runs call with n calls outstanding for d and returns calls/s.
// Each call gets the next sequence number, so calls go round the targets.
func callRate(ctx context.Context, n int, d time.Duration, call func(ctx context.Context, i uint64) error) (float64, error) {
	var next atomic.Uint64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	deadline := start.Add(d)
	for range n {
		g.Go(func() error {
			for time.Now().Before(deadline) {
				if err := call(gctx, next.Add(1)-1); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(next.Load()) / time.Since(start).Seconds(), nil
}

// readRate reads t's file from start to end in 1 MiB READs, depth of
// them outstanding, and returns MiB/s.
func readRate(ctx context.Context, t *target, depth int) (float64, error) {
	var next, total atomic.Uint64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range depth {
		g.Go(func() error {
			buf := make([]byte, readChunkBytes)
			for {
				off := next.Add(readChunkBytes) - readChunkBytes
				if off >= t.fileSizeBytes {
					return nil
				}
				n, _, err := t.o.Read(gctx, backend.Cred{}, t.file, buf, off)
				if err != nil {
					return fmt.Errorf("read at %d: %w", off, err)
				}
				total.Add(uint64(n))
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if got := total.Load(); got != t.fileSizeBytes {
		return 0, fmt.Errorf("%d of %d bytes: %w", got, t.fileSizeBytes, errShortRead)
	}
	return float64(t.fileSizeBytes) / (1 << 20) / d.Seconds(), nil
}
