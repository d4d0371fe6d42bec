package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs"
)

// checkBytes is how much of each small file, and of the first chunk of a
// big file, is compared with the generated data: enough to catch wrong
// or shifted bytes, cheap enough not to slow the reader down.
const checkBytes = 4096

// client is an NFSv3 connection made with the project's client.
type client struct {
	o    *nfs.Origin
	root backend.Handle
}

func dial(ctx context.Context, url string, conns int) (*client, error) {
	o, err := nfs.New(ctx, url, nfs.Options{Conns: conns})
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	root, _, err := o.Root(ctx)
	if err != nil {
		_ = o.Close() // the Root error is the one to report
		return nil, fmt.Errorf("root of %s: %w", url, err)
	}
	return &client{o: o, root: root}, nil
}

func (c *client) close() { _ = c.o.Close() } // a benchmark has nothing to do about a failed unmount

// walk looks up a slash-separated path below h.
func (c *client) walk(ctx context.Context, h backend.Handle, p string) (backend.Handle, backend.Attr, error) {
	var a backend.Attr
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		var err error
		if h, a, err = c.o.Lookup(ctx, backend.Cred{}, h, name); err != nil {
			return nil, a, fmt.Errorf("lookup %s: %w", p, err)
		}
	}
	return h, a, nil
}

// measureRTT times n LOOKUPs made one after the other (one request in
// flight), the figure a remote link's round trip dominates; the record's
// value is the median.
func measureRTT(ctx context.Context, c *client, ds Dataset, n int) (Record, error) {
	dir, _ := ds.emptyPath(0)
	dh, _, err := c.walk(ctx, c.root, dir)
	if err != nil {
		return Record{}, err
	}
	var names []string
	for i := 0; i < ds.EmptyFiles && len(names) < 256; i += ds.EmptyDirs {
		_, name := ds.emptyPath(i)
		names = append(names, name)
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range n {
		t := time.Now()
		if _, _, err := c.o.Lookup(ctx, backend.Cred{}, dh, names[i%len(names)]); err != nil {
			return Record{}, fmt.Errorf("lookup %s/%s: %w", dir, names[i%len(names)], err)
		}
		lat[i] = time.Since(t)
	}
	total := time.Since(start)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Record{
		Workload: "rtt", Unit: "ms (median)", Value: ms(lat[n/2]), Seconds: total.Seconds(), Ops: int64(n),
		Extra: map[string]float64{"mean_ms": ms(total) / float64(n), "p99_ms": ms(lat[n*99/100]), "min_ms": ms(lat[0])},
	}, nil
}

// readSmall lists small/ recursively (READDIRPLUS) and reads every file
// whole, n files at a time: one epoch over the image-like tree.
func readSmall(ctx context.Context, c *client, ds Dataset, n int) (Record, error) {
	type job struct {
		name string
		h    backend.Handle
		size uint64
	}
	start := time.Now()
	top, _, err := c.walk(ctx, c.root, "small")
	if err != nil {
		return Record{}, err
	}
	jobs := make(chan job, 1024)
	var files atomic.Int64
	var total atomic.Uint64
	g, gctx := errgroup.WithContext(ctx)
	pool := sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}
	for range n {
		g.Go(func() error {
			for j := range jobs {
				bp := pool.Get().(*[]byte)
				got, err := readWhole(gctx, c.o, j.h, *bp)
				if err == nil && got != j.size {
					err = fmt.Errorf("read %s: %d of %d bytes: %w", j.name, got, j.size, errShortRead)
				}
				if err == nil {
					err = checkSmall(ds, j.name, (*bp)[:min(got, checkBytes)])
				}
				pool.Put(bp)
				if err != nil {
					return err
				}
				files.Add(1)
				total.Add(got)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		var dirs []backend.DirEntry
		err := c.o.ReadDir(gctx, backend.Cred{}, top, func(de backend.DirEntry) bool {
			if de.Attr.Type == backend.TypeDirectory {
				dirs = append(dirs, de)
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("readdir small: %w", err)
		}
		for _, d := range dirs {
			err := c.o.ReadDir(gctx, backend.Cred{}, d.Handle, func(de backend.DirEntry) bool {
				if de.Attr.Type != backend.TypeRegular {
					return true
				}
				select {
				case jobs <- job{name: de.Name, h: de.Handle, size: de.Attr.SizeBytes}:
					return true
				case <-gctx.Done():
					return false
				}
			})
			if err != nil {
				return fmt.Errorf("readdir small/%s: %w", d.Name, err)
			}
		}
		return gctx.Err()
	})
	if err := g.Wait(); err != nil {
		return Record{}, err
	}
	d := time.Since(start)
	if int(files.Load()) != ds.SmallFiles || total.Load() != ds.SmallBytes {
		return Record{}, fmt.Errorf("small tree: %d files, %d bytes, want %d, %d: %w",
			files.Load(), total.Load(), ds.SmallFiles, ds.SmallBytes, errShortRead)
	}
	return Record{
		Workload: "small", Unit: "files/s", Value: float64(files.Load()) / d.Seconds(), Seconds: d.Seconds(),
		Files: files.Load(), Bytes: total.Load(),
		Extra: map[string]float64{"mib_per_s": float64(total.Load()) / (1 << 20) / d.Seconds()},
	}, nil
}

// readWhole reads h from offset 0 to its end into buf (reusing it for
// files larger than buf) and returns the byte count; buf keeps the first
// len(buf) bytes.
func readWhole(ctx context.Context, o *nfs.Origin, h backend.Handle, buf []byte) (uint64, error) {
	var off uint64
	for {
		p := buf
		if off > 0 {
			p = buf[len(buf)/2:] // keep the head of the file for the content check
		}
		m, eof, err := o.Read(ctx, backend.Cred{}, h, p, off)
		if err != nil {
			return off, fmt.Errorf("read at %d: %w", off, err)
		}
		off += uint64(m)
		if eof || m == 0 {
			return off, nil
		}
	}
}

var smallName = regexp.MustCompile(`^f(\d+)\.bin$`)

func checkSmall(ds Dataset, name string, head []byte) error {
	m := smallName.FindStringSubmatch(name)
	if m == nil {
		return fmt.Errorf("small file %q: unexpected name: %w", name, errBadContent)
	}
	i, _ := strconv.Atoi(m[1]) // the pattern admits only digits
	if err := checkPrefix(head, ds.Seed, uint64(i)); err != nil {
		return fmt.Errorf("small file %s: %w: %w", name, errBadContent, err)
	}
	return nil
}

// readBig reads big file i with n chunk-sized READs outstanding.
func readBig(ctx context.Context, c *client, ds Dataset, i, n, chunk int) (Record, error) {
	p := ds.bigPath(i)
	h, a, err := c.walk(ctx, c.root, p)
	if err != nil {
		return Record{}, err
	}
	if a.SizeBytes != ds.BigBytes {
		return Record{}, fmt.Errorf("%s is %d bytes, want %d: %w", p, a.SizeBytes, ds.BigBytes, errShortRead)
	}
	var next, got atomic.Uint64
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for range n {
		g.Go(func() error {
			buf := make([]byte, chunk)
			for {
				off := next.Add(uint64(chunk)) - uint64(chunk)
				if off >= a.SizeBytes {
					return nil
				}
				m, _, err := c.o.Read(gctx, backend.Cred{}, h, buf, off)
				if err != nil {
					return fmt.Errorf("read %s at %d: %w", p, off, err)
				}
				if want := min(uint64(chunk), a.SizeBytes-off); uint64(m) != want {
					return fmt.Errorf("read %s at %d: %d of %d bytes: %w", p, off, m, want, errShortRead)
				}
				if off == 0 {
					if err := checkPrefix(buf[:min(m, checkBytes)], ds.Seed, uint64(1<<40+i)); err != nil {
						return fmt.Errorf("%s: %w: %w", p, errBadContent, err)
					}
				}
				got.Add(uint64(m))
			}
		})
	}
	if err := g.Wait(); err != nil {
		return Record{}, err
	}
	d := time.Since(start)
	return Record{
		Workload: "big", Unit: "MiB/s", Value: float64(got.Load()) / (1 << 20) / d.Seconds(), Seconds: d.Seconds(),
		Bytes: got.Load(), Extra: map[string]float64{"file": float64(i)},
	}, nil
}

// statTree looks up every empty directory, then LOOKUPs and GETATTRs
// every empty file, n calls outstanding: what `find -ls` or a loader's
// os.stat pass over a tree costs.
func statTree(ctx context.Context, c *client, ds Dataset, n int) (Record, error) {
	start := time.Now()
	top, _, err := c.walk(ctx, c.root, "empty")
	if err != nil {
		return Record{}, err
	}
	dirs := make([]backend.Handle, ds.EmptyDirs)
	var ops atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for i := range ds.EmptyDirs {
		g.Go(func() error {
			dir, _ := ds.emptyPath(i)
			h, _, err := c.o.Lookup(gctx, backend.Cred{}, top, strings.TrimPrefix(dir, "empty/"))
			if err != nil {
				return fmt.Errorf("lookup %s: %w", dir, err)
			}
			dirs[i] = h
			ops.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Record{}, err
	}
	next := atomic.Int64{}
	g, gctx = errgroup.WithContext(ctx)
	for range n {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= ds.EmptyFiles {
					return nil
				}
				dir, name := ds.emptyPath(i)
				h, _, err := c.o.Lookup(gctx, backend.Cred{}, dirs[i%ds.EmptyDirs], name)
				if err != nil {
					return fmt.Errorf("lookup %s/%s: %w", dir, name, err)
				}
				a, err := c.o.GetAttr(gctx, backend.Cred{}, h)
				if err != nil {
					return fmt.Errorf("getattr %s/%s: %w", dir, name, err)
				}
				if a.Type != backend.TypeRegular || a.SizeBytes != 0 {
					return fmt.Errorf("%s/%s: %v of %d bytes: %w", dir, name, a.Type, a.SizeBytes, errBadContent)
				}
				ops.Add(2)
			}
		})
	}
	if err := g.Wait(); err != nil {
		return Record{}, err
	}
	d := time.Since(start)
	return Record{
		Workload: "stat", Unit: "ops/s", Value: float64(ops.Load()) / d.Seconds(), Seconds: d.Seconds(),
		Ops: ops.Load(), Files: int64(ds.EmptyFiles),
		Extra: map[string]float64{"files_per_s": float64(ds.EmptyFiles) / d.Seconds()},
	}, nil
}

var libnfsRate = regexp.MustCompile(`= ([0-9.]+) MiB/s`)

// readLibnfs reads big file i with a libnfs program: kind "libnfsread"
// (bench/nfsread/libnfs, 32 READs outstanding; its own figure, which
// leaves out the mount) or "nfs-cp" (Debian's libnfs-utils, one READ at a
// time, into a file in sinkDir that is removed afterwards, since it cannot
// write to /dev/null; wall time including the mount).
func readLibnfs(ctx context.Context, kind, tool, url, sinkDir string, ds Dataset, i, n int) (Record, error) {
	var cmd *exec.Cmd
	switch kind {
	case "libnfsread":
		cmd = exec.CommandContext(ctx, tool, url, strconv.Itoa(n))
	case "nfs-cp":
		sink, err := os.MkdirTemp(sinkDir, "nfs-cp-")
		if err != nil {
			return Record{}, fmt.Errorf("nfs-cp sink: %w", err)
		}
		defer func() { _ = os.RemoveAll(sink) }() // a leftover temp dir is harmless
		cmd = exec.CommandContext(ctx, tool, url, filepath.Join(sink, "out"))
	default:
		return Record{}, fmt.Errorf("libnfs kind %q (libnfsread, nfs-cp): %w", kind, errUsage)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return Record{}, fmt.Errorf("%s %s: %w: %s", kind, url, err, strings.TrimSpace(string(out)))
	}
	rec := Record{Workload: "big", Client: kind, Unit: "MiB/s", Seconds: d.Seconds(), Bytes: ds.BigBytes,
		Value: float64(ds.BigBytes) / (1 << 20) / d.Seconds(), Extra: map[string]float64{"file": float64(i)}}
	if kind == "libnfsread" {
		m := libnfsRate.FindSubmatch(out)
		if m == nil {
			return Record{}, fmt.Errorf("libnfsread %s: no rate in %q: %w", url, out, errShortRead)
		}
		rec.Value, _ = strconv.ParseFloat(string(m[1]), 64) // the pattern admits only a number
		rec.Seconds = float64(ds.BigBytes) / (1 << 20) / rec.Value
	}
	return rec, nil
}
