// Command nfsread measures how fast backend/nfs reads from an NFSv3
// server: one big file with N reads outstanding, and a tree of files read
// by N workers (issue 4's benchmark). It prints MiB/s and files/s.
//
//	nfsread -url nfs://127.0.0.1:39411/srv/data?mountport=39412 -file big.bin -tree small -n 32
//
// It is a benchmark driver, not a test: results vary with the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs"
)

func main() {
	url := flag.String("url", "", "origin URL (nfs://host:port/export?mountport=N)")
	file := flag.String("file", "", "big file to read, relative to the export")
	tree := flag.String("tree", "", "directory whose files are all read, relative to the export")
	n := flag.Int("n", 32, "requests (big file) or files (tree) outstanding")
	chunk := flag.Int("chunk", 1<<20, "bytes per read request")
	conns := flag.Int("conns", 2, "TCP connections")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the reads to this file")
	flag.Parse()
	if *url == "" || (*file == "" && *tree == "") {
		flag.Usage()
		os.Exit(2)
	}
	if err := profiled(*cpuprofile, func() error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return run(ctx, *url, *file, *tree, *n, *chunk, *conns)
	}); err != nil {
		fmt.Fprintln(os.Stderr, "nfsread:", err)
		os.Exit(1)
	}
}

// profiled runs fn, under a CPU profile written to path unless path is "".
func profiled(path string, fn func() error) (err error) {
	if path == "" {
		return fn()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return fn()
}

func run(ctx context.Context, url, file, tree string, n, chunk, conns int) error {
	o, err := nfs.New(ctx, url, nfs.Options{Conns: conns, MaxConcurrency: n})
	if err != nil {
		return err
	}
	defer func() { _ = o.Close() }() // a benchmark has nothing to do about a failed unmount
	root, _, err := o.Root(ctx)
	if err != nil {
		return err
	}
	if file != "" {
		h, a, err := walk(ctx, o, root, file)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := readFile(ctx, o, h, a.SizeBytes, n, chunk); err != nil {
			return err
		}
		d := time.Since(start)
		fmt.Printf("big file  %s: %d MiB in %.2fs = %.1f MiB/s (n=%d, chunk=%d, conns=%d)\n",
			file, a.SizeBytes>>20, d.Seconds(), float64(a.SizeBytes)/(1<<20)/d.Seconds(), n, chunk, conns)
	}
	if tree != "" {
		h, _, err := walk(ctx, o, root, tree)
		if err != nil {
			return err
		}
		start := time.Now()
		files, bytes, err := readTree(ctx, o, h, n)
		if err != nil {
			return err
		}
		d := time.Since(start)
		fmt.Printf("tree      %s: %d files, %d MiB in %.2fs = %.0f files/s, %.1f MiB/s (n=%d, conns=%d)\n",
			tree, files, bytes>>20, d.Seconds(), float64(files)/d.Seconds(), float64(bytes)/(1<<20)/d.Seconds(), n, conns)
	}
	return nil
}

func walk(ctx context.Context, o *nfs.Origin, h backend.Handle, p string) (backend.Handle, backend.Attr, error) {
	var a backend.Attr
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		var err error
		if h, a, err = o.Lookup(ctx, backend.Cred{}, h, name); err != nil {
			return nil, a, err
		}
	}
	return h, a, nil
}

// readFile reads size bytes of h with n chunk-sized reads outstanding.
func readFile(ctx context.Context, o *nfs.Origin, h backend.Handle, size uint64, n, chunk int) error {
	var next atomic.Uint64
	g, ctx := errgroup.WithContext(ctx)
	for range n {
		g.Go(func() error {
			buf := make([]byte, chunk)
			for {
				off := next.Add(uint64(chunk)) - uint64(chunk)
				if off >= size {
					return nil
				}
				if _, _, err := o.Read(ctx, backend.Cred{}, h, buf, off); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// readTree lists dir recursively and reads every regular file whole, n
// files at a time.
func readTree(ctx context.Context, o *nfs.Origin, dir backend.Handle, n int) (int, uint64, error) {
	type job struct {
		h    backend.Handle
		size uint64
	}
	jobs := make(chan job, 1024)
	var files atomic.Int64
	var total atomic.Uint64
	g, gctx := errgroup.WithContext(ctx)
	var pool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}
	for range n {
		g.Go(func() error {
			for j := range jobs {
				bp := pool.Get().(*[]byte)
				buf := *bp
				// Ask for no more than the file holds (as libnfstree
				// does): a server may size its buffers by the count.
				want := buf[:max(1, min(uint64(len(buf)), j.size))]
				for off := uint64(0); off < j.size || off == 0; {
					m, eof, err := o.Read(gctx, backend.Cred{}, j.h, want, off)
					if err != nil {
						return err
					}
					off += uint64(m)
					if eof || m == 0 {
						break
					}
				}
				pool.Put(bp)
				files.Add(1)
				total.Add(j.size)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		var list func(backend.Handle) error
		list = func(d backend.Handle) error {
			var dirs []backend.Handle
			err := o.ReadDir(gctx, backend.Cred{}, d, func(de backend.DirEntry) bool {
				switch de.Attr.Type {
				case backend.TypeDirectory:
					dirs = append(dirs, de.Handle)
				case backend.TypeRegular:
					select {
					case jobs <- job{de.Handle, de.Attr.SizeBytes}:
					case <-gctx.Done():
						return false
					}
				}
				return true
			})
			if err != nil {
				return err
			}
			for _, sub := range dirs {
				if err := list(sub); err != nil {
					return err
				}
			}
			return gctx.Err()
		}
		return list(dir)
	})
	err := g.Wait()
	return int(files.Load()), total.Load(), err
}
