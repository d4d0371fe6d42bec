package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
)

// trainConfig is the simulated training loop: every step needs Batch
// samples (small files) and then computes for Compute; a loader with
// Workers reads in flight keeps up to Prefetch batches ready ahead of the
// consumer, as a PyTorch DataLoader with prefetching does.
type trainConfig struct {
	Steps    int
	Batch    int
	Compute  time.Duration
	Workers  int
	Prefetch int
	Seed     uint64
}

type batch struct {
	samples []backend.DirEntry
	left    atomic.Int64
	done    chan struct{}
}

// train runs the loop and reports the share of wall time the consumer
// spent waiting for data (1 - what GPU utilization would be).
func train(ctx context.Context, c *client, ds Dataset, cfg trainConfig) (Record, error) {
	// The sample list is built before the clock starts, as a loader's
	// dataset index is.
	var files []backend.DirEntry
	var paths []string
	top, _, err := c.walk(ctx, c.root, "small")
	if err != nil {
		return Record{}, err
	}
	var dirs []backend.DirEntry
	if err := c.o.ReadDir(ctx, backend.Cred{}, top, func(de backend.DirEntry) bool {
		dirs = append(dirs, de)
		return true
	}); err != nil {
		return Record{}, fmt.Errorf("readdir small: %w", err)
	}
	for _, d := range dirs {
		if err := c.o.ReadDir(ctx, backend.Cred{}, d.Handle, func(de backend.DirEntry) bool {
			files = append(files, de)
			paths = append(paths, d.Name+"/"+de.Name)
			return true
		}); err != nil {
			return Record{}, fmt.Errorf("readdir small/%s: %w", d.Name, err)
		}
	}
	if len(files) != ds.SmallFiles {
		return Record{}, fmt.Errorf("train: listed %d files, want %d: %w", len(files), ds.SmallFiles, errShortRead)
	}

	// Servers list in different orders; the samples must not differ.
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(paths[a], paths[b]) })
	sorted := make([]backend.DirEntry, len(files))
	for i, j := range idx {
		sorted[i] = files[j]
	}
	files = sorted
	r := rand.New(rand.NewPCG(cfg.Seed, 7))
	order := r.Perm(len(files))
	type job struct {
		e backend.DirEntry
		b *batch
	}
	jobs := make(chan job, cfg.Batch)
	ready := make(chan *batch, cfg.Prefetch)
	g, gctx := errgroup.WithContext(ctx)
	var bytes atomic.Uint64
	for range cfg.Workers {
		g.Go(func() error {
			buf := make([]byte, 1<<20)
			for j := range jobs {
				n, err := readWhole(gctx, c.o, j.e.Handle, buf)
				if err != nil {
					return fmt.Errorf("train read %s: %w", j.e.Name, err)
				}
				if n != j.e.Attr.SizeBytes {
					return fmt.Errorf("train read %s: %d of %d bytes: %w", j.e.Name, n, j.e.Attr.SizeBytes, errShortRead)
				}
				bytes.Add(n)
				if j.b.left.Add(-1) == 0 {
					close(j.b.done)
				}
			}
			return nil
		})
	}
	// The producer hands out one batch's reads at a time, and blocks
	// while Prefetch batches are waiting for the consumer.
	g.Go(func() error {
		defer close(jobs)
		defer close(ready)
		k := 0
		for range cfg.Steps {
			b := &batch{samples: make([]backend.DirEntry, cfg.Batch), done: make(chan struct{})}
			b.left.Store(int64(cfg.Batch))
			for i := range b.samples {
				b.samples[i] = files[order[k%len(order)]]
				k++
			}
			select {
			case ready <- b:
			case <-gctx.Done():
				return gctx.Err()
			}
			for _, e := range b.samples {
				select {
				case jobs <- job{e: e, b: b}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		return nil
	})
	var wait, firstWait time.Duration
	start := time.Now()
	var consumeErr error
	for step := range cfg.Steps {
		t := time.Now()
		b, ok := <-ready
		if ok {
			select {
			case <-b.done:
			case <-gctx.Done():
				ok = false
			}
		}
		if !ok {
			consumeErr = fmt.Errorf("train: loader stopped at step %d", step)
			break
		}
		w := time.Since(t)
		wait += w
		if step == 0 {
			firstWait = w
		}
		// The "GPU" works on the batch; the loader keeps reading.
		select {
		case <-time.After(cfg.Compute):
		case <-ctx.Done():
			consumeErr = ctx.Err()
		}
		if consumeErr != nil {
			break
		}
	}
	total := time.Since(start)
	if err := g.Wait(); err != nil {
		return Record{}, err
	}
	if consumeErr != nil {
		return Record{}, consumeErr
	}
	samples := cfg.Steps * cfg.Batch
	steady := total - firstWait
	return Record{
		Workload: "train", Unit: "wait share", Value: wait.Seconds() / total.Seconds(), Seconds: total.Seconds(),
		Files: int64(samples), Bytes: bytes.Load(),
		Extra: map[string]float64{
			"wait_s":                 wait.Seconds(),
			"first_step_wait_s":      firstWait.Seconds(),
			"wait_share_steady":      (wait - firstWait).Seconds() / steady.Seconds(),
			"samples_per_s":          float64(samples) / total.Seconds(),
			"demand_samples_per_s":   float64(cfg.Batch) / cfg.Compute.Seconds(),
			"steps":                  float64(cfg.Steps),
			"batch":                  float64(cfg.Batch),
			"compute_ms":             float64(cfg.Compute) / float64(time.Millisecond),
			"workers":                float64(cfg.Workers),
			"prefetch_batches":       float64(cfg.Prefetch),
			"gpu_utilization_approx": 1 - wait.Seconds()/total.Seconds(),
		},
	}, nil
}
