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
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
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
	memprofile := flag.String("memprofile", "", "write an allocation profile (all allocations of the run) to this file")
	tracefile := flag.String("trace", "", "write a runtime execution trace of the run to this file (go tool trace)")
	flag.Parse()
	if *url == "" || (*file == "" && *tree == "") {
		flag.Usage()
		os.Exit(2)
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
	}
	if err := profiled(*cpuprofile, *tracefile, func() error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return run(ctx, *url, *file, *tree, *n, *chunk, *conns)
	}); err != nil {
		fmt.Fprintln(os.Stderr, "nfsread:", err)
		os.Exit(1)
	}
	if *memprofile != "" {
		if err := writeHeapProfile(*memprofile); err != nil {
			fmt.Fprintln(os.Stderr, "nfsread:", err)
			os.Exit(1)
		}
	}
}

// writeHeapProfile writes the allocation profile (look at alloc_space /
// alloc_objects) to path.
func writeHeapProfile(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	runtime.GC() // the profile shows allocations as of the last GC
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// profiled runs fn, under a CPU profile written to cpuPath and an
// execution trace written to tracePath (each unless "").
func profiled(cpuPath, tracePath string, fn func() error) (err error) {
	closeFile := func(f *os.File) {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if cpuPath != "" {
		f, ferr := os.Create(cpuPath)
		if ferr != nil {
			return ferr
		}
		defer closeFile(f)
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if tracePath != "" {
		f, ferr := os.Create(tracePath)
		if ferr != nil {
			return ferr
		}
		defer closeFile(f)
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
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
		bufs := workerBuffers(n, chunk)
		start := time.Now()
		if err := readFile(ctx, o, h, a.SizeBytes, bufs); err != nil {
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
		bufs := workerBuffers(n, 1<<20)
		start := time.Now()
		files, bytes, err := readTree(ctx, o, h, bufs)
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

// workerBuffers makes one read buffer per worker, before the clock
// starts, and touches every page of them: the C readers read into
// libnfs's buffers, which it reuses from the first replies on, and
// nascache reads into pooled buffers, so the first-touch page faults of
// fresh buffers (a tenth of the client's CPU time on the big file) are no
// part of what is measured.
func workerBuffers(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
		for j := 0; j < size; j += 4096 {
			bufs[i][j] = 1
		}
	}
	return bufs
}

// readFile reads size bytes of h with one chunk-sized read outstanding
// per buffer (a buffer per worker).
func readFile(ctx context.Context, o *nfs.Origin, h backend.Handle, size uint64, bufs [][]byte) error {
	var next atomic.Uint64
	g, ctx := errgroup.WithContext(ctx)
	for _, buf := range bufs {
		chunk := len(buf)
		g.Go(func() error {
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

// readTree lists dir recursively and reads every regular file whole, one
// file at a time per buffer (a buffer per worker).
func readTree(ctx context.Context, o *nfs.Origin, dir backend.Handle, bufs [][]byte) (int, uint64, error) {
	type job struct {
		h    backend.Handle
		size uint64
	}
	jobs := make(chan job, 1024)
	var files atomic.Int64
	var total atomic.Uint64
	g, gctx := errgroup.WithContext(ctx)
	for _, buf := range bufs {
		g.Go(func() error {
			// One buffer per worker for the whole run, as libnfstree
			// reads into libnfs's own buffers: a buffer taken from a
			// sync.Pool per file was re-made (1 MiB, zeroed and
			// faulted in) after every GC, which the C reader never pays.
			for j := range jobs {
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
