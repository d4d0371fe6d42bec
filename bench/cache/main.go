// Command cache is issue 5's benchmark driver: it generates the data set
// (small image-like files, big files, empty files), measures one workload
// against one NFSv3 server per invocation (ganesha directly, or nascache in
// front of it) and turns the collected measurements into the result table,
// the target ratios, a JSON file and gnuplot input.
//
// bench/cache/run.sh calls it for every origin, mode and workload; see
// bench/cache/README.md. Subcommands:
//
//	cache gen    --data DIR --scale S
//	cache rtt    --data DIR --url URL [--origin O --mode M] [--out FILE]
//	cache small  ...        (files/s over the small-file tree, --n reads in flight)
//	cache big    ... --file I   (MiB/s of big file I, --n READs in flight)
//	cache stat   ...        (LOOKUP+GETATTR ops/s over the empty files)
//	cache libnfs ... --kind libnfsread|nfs-cp --tool PATH --libnfs-url URL --file I
//	cache train  ... [--steps --batch --compute --workers --prefetch]
//	cache report --in MEASUREMENTS.jsonl --meta META.json --json OUT.json --plot-dir DIR
//
// It is a benchmark driver, not a test: results vary with the machine.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Record is one measurement, one JSON line in the measurements file.
type Record struct {
	Origin   string             `json:"origin"`   // loopback | netlink
	Mode     string             `json:"mode"`     // direct | cold | warm
	Workload string             `json:"workload"` // rtt | small | big | stat | train
	Client   string             `json:"client"`   // backend/nfs | libnfsread | nfs-cp
	Value    float64            `json:"value"`
	Unit     string             `json:"unit"`
	Seconds  float64            `json:"seconds"`
	Files    int64              `json:"files,omitempty"`
	Bytes    uint64             `json:"bytes,omitempty"`
	Ops      int64              `json:"ops,omitempty"`
	Extra    map[string]float64 `json:"extra,omitempty"`
	At       time.Time          `json:"at"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cache:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: cache gen|rtt|small|big|stat|libnfs|train|report [flags]", errUsage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	data := fs.String("data", "", "data set directory (the export ganesha serves)")
	switch cmd {
	case "gen":
		scale := fs.Float64("scale", 1, "data set size relative to issue 5's")
		seed := fs.Uint64("seed", 1, "content seed")
		workers := fs.Int("workers", 2, "files written at once")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *data == "" || *scale <= 0 || *scale > 1 {
			return fmt.Errorf("%w: gen needs --data and 0 < --scale <= 1", errUsage)
		}
		start := time.Now()
		ds, made, err := generate(*data, *scale, *seed, *workers)
		if err != nil {
			return err
		}
		verb := "reused"
		if made {
			verb = "generated"
		}
		fmt.Fprintf(stdout, "%s %s in %.1fs: %d small files (%d MiB) in %d dirs, %d x %d MiB, %d empty files in %d dirs\n",
			verb, *data, time.Since(start).Seconds(), ds.SmallFiles, ds.SmallBytes>>20, ds.SmallDirs,
			ds.BigFiles, ds.BigBytes>>20, ds.EmptyFiles, ds.EmptyDirs)
		return nil
	case "report":
		in := fs.String("in", "", "measurements (JSON lines)")
		meta := fs.String("meta", "", "run description (JSON object) to embed")
		out := fs.String("json", "", "result file to write")
		plotDir := fs.String("plot-dir", "", "directory for gnuplot data and script (empty: none)")
		png := fs.String("png", "", "PNG the gnuplot script draws")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *in == "" || *out == "" {
			return fmt.Errorf("%w: report needs --in and --json", errUsage)
		}
		return report(*in, *meta, *out, *plotDir, *png, stdout)
	}

	url := fs.String("url", "", "server URL for the project's client (nfs://host:port/export?mountport=N)")
	origin := fs.String("origin", "", "label: which origin (loopback, netlink)")
	mode := fs.String("mode", "", "label: direct, cold or warm")
	outPath := fs.String("out", "", "append the JSON record to this file (default: stdout)")
	n := fs.Int("n", 32, "requests (big file, stat) or files (small tree, train) in flight")
	conns := fs.Int("conns", 2, "TCP connections of the project's client")
	file := fs.Int("file", 0, "big file index")
	chunk := fs.Int("chunk", 1<<20, "bytes per READ (big file)")
	count := fs.Int("count", 500, "LOOKUPs (rtt)")
	kind := fs.String("kind", "libnfsread", "libnfs reader: libnfsread or nfs-cp")
	tool := fs.String("tool", "", "path of the libnfs reader")
	libURL := fs.String("libnfs-url", "", "libnfs URL of the big file")
	sinkDir := fs.String("sink-dir", "/dev/shm", "where nfs-cp writes its (deleted) copy")
	var tc trainConfig
	fs.IntVar(&tc.Steps, "steps", 100, "training steps")
	fs.IntVar(&tc.Batch, "batch", 256, "samples per step")
	fs.DurationVar(&tc.Compute, "compute", 100*time.Millisecond, "compute time per step")
	fs.IntVar(&tc.Prefetch, "prefetch", 2, "batches the loader keeps ready")
	fs.Uint64Var(&tc.Seed, "seed", 1, "sample order seed")
	cpuPids := fs.String("cpu-pids", "", "name=pid,... of servers whose CPU time is recorded")
	if err := parse(fs, args); err != nil {
		return err
	}
	pids, err := parsePids(*cpuPids)
	if err != nil {
		return err
	}
	tc.Workers = *n
	if *data == "" || (*url == "" && cmd != "libnfs") || *n <= 0 {
		return fmt.Errorf("%w: %s needs --data and --url", errUsage, cmd)
	}
	ds, err := readManifest(*data)
	if err != nil {
		return err
	}
	var rec Record
	cpu := startCPU(pids)
	if cmd == "libnfs" {
		if *tool == "" || *libURL == "" {
			return fmt.Errorf("%w: libnfs needs --tool and --libnfs-url", errUsage)
		}
		rec, err = readLibnfs(ctx, *kind, *tool, *libURL, *sinkDir, ds, *file, *n)
	} else {
		var c *client
		if c, err = dial(ctx, *url, *conns); err != nil {
			return err
		}
		defer c.close()
		switch cmd {
		case "rtt":
			rec, err = measureRTT(ctx, c, ds, max(*count, 1))
		case "small":
			rec, err = readSmall(ctx, c, ds, *n)
		case "big":
			if *file < 0 || *file >= ds.BigFiles {
				return fmt.Errorf("%w: --file %d outside 0..%d", errUsage, *file, ds.BigFiles-1)
			}
			rec, err = readBig(ctx, c, ds, *file, *n, *chunk)
		case "stat":
			rec, err = statTree(ctx, c, ds, *n)
		case "train":
			if tc.Steps <= 0 || tc.Batch <= 0 || tc.Compute <= 0 || tc.Prefetch <= 0 {
				return fmt.Errorf("%w: train needs positive --steps, --batch, --compute, --prefetch", errUsage)
			}
			rec, err = train(ctx, c, ds, tc)
		default:
			return fmt.Errorf("%w: unknown subcommand %q", errUsage, cmd)
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", cmd, *origin, *mode, err)
	}
	if rec.Extra == nil {
		rec.Extra = map[string]float64{}
	}
	cpu.stop(rec.Extra)
	rec.Origin, rec.Mode, rec.At = *origin, *mode, time.Now().UTC()
	if rec.Client == "" {
		rec.Client = "backend/nfs"
	}
	return emit(rec, *outPath, stdout)
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected %q", errUsage, fs.Name(), fs.Args())
	}
	return nil
}

func emit(rec Record, path string, stdout io.Writer) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	b = append(b, '\n')
	if path == "" {
		_, err = stdout.Write(b)
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close() // the write error is the one to report
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "%-8s %-6s %-6s %-12s %12.2f %s (%.2fs)\n",
		rec.Origin, rec.Mode, rec.Workload, rec.Client, rec.Value, rec.Unit, rec.Seconds)
	return nil
}
