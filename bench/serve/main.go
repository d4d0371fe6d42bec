// Command serve compares two NFSv3 servers serving the same directory
// (nascache and nfs-ganesha, say) in one run: GETATTR ops/s and LOOKUP
// ops/s with N calls outstanding, and the MiB/s of a sequential read of one
// big file with 1 and with 16 READs of 1 MiB outstanding. Both servers are
// measured in turn, metric by metric and round by round, so that a change
// of machine load hits both alike; the median of the rounds is reported.
// It prints a table with the ratio A/B and writes the raw figures as JSON.
//
//	serve -a 'nfs://127.0.0.1:21049/data?mountport=21049' -a-name nascache \
//	      -b 'nfs://127.0.0.1:21149/srv/export?mountport=21150' -b-name ganesha \
//	      -file big.bin -rounds 3
//
// The client is nascache's own (backend/nfs): the figures compare the
// servers, not clients. GETATTR goes round the handles of the -dir listing
// (plus the directory itself), LOOKUP round its names. It is a benchmark
// driver, not a test: results vary with the machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	servers [2]server
	file    string
	dir     string
	// outstanding is the number of GETATTR / LOOKUP calls in flight.
	outstanding int
	// readDepths are the READs in flight of the sequential reads.
	readDepths []int
	conns      int
	duration   time.Duration
	rounds     int
	outDir     string
}

// server is one server under test.
type server struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&c.servers[0].URL, "a", "", "URL of server A (nfs://host:port/export?mountport=N)")
	fl.StringVar(&c.servers[0].Name, "a-name", "A", "name of server A in the table")
	fl.StringVar(&c.servers[1].URL, "b", "", "URL of server B, the reference of the ratios")
	fl.StringVar(&c.servers[1].Name, "b-name", "B", "name of server B in the table")
	fl.StringVar(&c.file, "file", "big.bin", "big file to read, relative to the export")
	fl.StringVar(&c.dir, "dir", "", "directory whose entries GETATTR and LOOKUP go round, relative to the export")
	fl.IntVar(&c.outstanding, "n", 16, "GETATTR and LOOKUP calls outstanding")
	fl.IntVar(&c.conns, "conns", 1, "TCP connections per server")
	fl.DurationVar(&c.duration, "duration", 3*time.Second, "length of one GETATTR or LOOKUP measurement")
	fl.IntVar(&c.rounds, "rounds", 3, "rounds; the median is reported")
	fl.StringVar(&c.outDir, "out", filepath.Join("bench", "results"), "directory of the JSON result (empty: none)")
	if err := fl.Parse(args); err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	c.readDepths = []int{1, 16}
	switch {
	case c.servers[0].URL == "" || c.servers[1].URL == "":
		return config{}, fmt.Errorf("-a and -b are required: %w", errUsage)
	case c.outstanding < 1 || c.conns < 1 || c.rounds < 1 || c.duration <= 0:
		return config{}, fmt.Errorf("-n, -conns, -rounds and -duration must be positive: %w", errUsage)
	case fl.NArg() != 0:
		return config{}, fmt.Errorf("unexpected argument %q: %w", fl.Arg(0), errUsage)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	started := time.Now().UTC()
	res, err := measureAll(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	rep := newReport(cfg, started, res)
	if err := rep.writeTable(stdout); err != nil {
		return err
	}
	if cfg.outDir == "" {
		return nil
	}
	path := filepath.Join(cfg.outDir, resultName(started, cfg.servers))
	if err := rep.writeJSON(path); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "wrote", path)
	return nil
}

// resultName is the JSON file's name: the start time and the two servers,
// so that runs against other builds do not overwrite each other.
func resultName(started time.Time, s [2]server) string {
	clean := func(n string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
				return r
			}
			return '_'
		}, n)
	}
	return fmt.Sprintf("serve-%s-%s-vs-%s.json", started.Format("20060102-150405"), clean(s[0].Name), clean(s[1].Name))
}
