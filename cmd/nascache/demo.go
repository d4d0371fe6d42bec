package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nascache/nascache/backend/nfs"
	"github.com/nascache/nascache/cachefs"
)

// demoExport is the export path of the demo tree.
const demoExport = "/demo"

// demoListen is the demo's default NFS address: an unprivileged port on
// loopback, so that the demo runs without root.
const demoListen = "127.0.0.1:20490"

// cmdDemo makes the sample tree, serves it and prints how to mount it.
// With --self-check it reads the tree back through NFS and exits instead
// of serving until interrupted.
func cmdDemo(ctx context.Context, args []string, e env) error {
	fs := newFlags("demo", e)
	dir := fs.String("dir", "", "make the sample tree in `DIR` (empty or an earlier demo tree; default: a temporary directory)")
	listen := fs.String("listen", demoListen, "NFS+MOUNT `address` to serve on")
	admin := fs.String("admin-listen", "", "admin HTTP `address` (/healthz, /metrics); empty = off")
	selfCheck := fs.Bool("self-check", false, "read the tree back through NFS, compare, report and exit")
	logLevel := fs.String("log-level", "warn", "log `level`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "nascache-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(tmp); err != nil {
			fmt.Fprintf(e.stderr, "nascache demo: remove %s: %v\n", tmp, err)
		}
	}()
	tree := *dir
	if tree == "" {
		tree = filepath.Join(tmp, "tree")
	}
	tree, err = filepath.Abs(tree)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	sum, err := makeSampleTree(tree)
	if err != nil {
		return err
	}

	cfg := &Config{
		Listen:      *listen,
		AdminListen: *admin,
		DataDir:     filepath.Join(tmp, "data"),
		LogLevel:    *logLevel,
		LogFormat:   "auto",
		CacheSize:   demoCacheSize,
		Exports:     []ExportConfig{{Path: demoExport, Origin: "file://" + tree}},
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := newLogger(e.stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	n, err := buildNode(ctx, cfg, logger)
	if err != nil {
		return err
	}
	addr := reachable(n.nfsAddr().(*net.TCPAddr))
	fmt.Fprintf(e.stdout, "nascache demo: serving %s (%d files, %d dirs, %d symlinks, %d hard link, %.1f MiB) as %s on %s\n\n",
		tree, sum.Files, sum.Dirs, sum.Symlinks, sum.HardLinks, float64(sum.Bytes)/(1<<20), demoExport, addr)
	fmt.Fprint(e.stdout, mountInstructions(addr, demoExport))

	if !*selfCheck {
		fmt.Fprintln(e.stdout, "\nServing until interrupted (Ctrl-C).")
		return n.Run(ctx, "")
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx, "") }()
	// Two passes: the first fills the data cache from the origin, the
	// second must be served from it.
	var reps [2]report
	var stats [2]cachefs.Stats
	var checkErr error
	for i := range reps {
		if reps[i], checkErr = checkTree(ctx, tree, nfsURL(addr, demoExport)); checkErr != nil {
			break
		}
		n.fs.WaitIdle() // chunks being stored are in the cache before we count
		stats[i] = n.fs.Stats()
	}
	stop()
	runErr := <-done
	fmt.Fprintln(e.stdout)
	if checkErr != nil {
		return fmt.Errorf("self-check: %w", checkErr)
	}
	mismatches := 0
	for i, rep := range reps {
		fmt.Fprintf(e.stdout, "pass %d (%s):\n", i+1, [2]string{"cold: the cache fills from the origin", "warm: served from the cache"}[i])
		rep.print(e.stdout)
		mismatches += len(rep.Mismatches)
	}
	warmFetches := stats[1].OriginFetches - stats[0].OriginFetches
	warmHits := stats[1].ChunkHits - stats[0].ChunkHits
	fmt.Fprintf(e.stdout, "cache: %d chunks (%.1f MiB) fetched from the origin in pass 1; pass 2: %d chunk hits, %d origin fetches\n",
		stats[0].OriginFetches, float64(stats[0].OriginBytesServed)/(1<<20), warmHits, warmFetches)
	switch {
	case runErr != nil:
		return runErr
	case mismatches > 0:
		return fmt.Errorf("self-check: %d mismatch(es)", mismatches)
	case warmFetches > 0 || warmHits == 0:
		return fmt.Errorf("self-check: the second pass was not served from the cache (%d hits, %d origin fetches)", warmHits, warmFetches)
	}
	return nil
}

// demoCacheSize bounds the demo's data cache (in its temporary data_dir).
const demoCacheSize = "256MiB"

// reachable returns addr with an unspecified IP (0.0.0.0, ::) replaced by
// the loopback address, which the self-check and the printed commands use.
func reachable(addr *net.TCPAddr) *net.TCPAddr {
	switch {
	case !addr.IP.IsUnspecified():
		return addr
	case addr.IP.To4() != nil:
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: addr.Port}
	default:
		return &net.TCPAddr{IP: net.IPv6loopback, Port: addr.Port}
	}
}

// nfsURL is the URL of an export on the demo server for backend/nfs.
func nfsURL(addr *net.TCPAddr, export string) string {
	return fmt.Sprintf("nfs://%s%s?mountport=%d", addr, export, addr.Port)
}

// mountInstructions tells how to reach the export with the Linux kernel
// client and with libnfs.
func mountInstructions(addr *net.TCPAddr, export string) string {
	host := addr.IP.String()
	if addr.IP.To4() == nil {
		host = "[" + host + "]"
	}
	return fmt.Sprintf(`Mount it with the Linux kernel client:
  sudo mkdir -p /mnt/nascache-demo
  sudo mount -t nfs -o vers=3,proto=tcp,port=%[2]d,mountport=%[2]d,mountproto=tcp,nolock %[1]s:%[3]s /mnt/nascache-demo
Or list it with libnfs (Debian: libnfs-utils):
  nfs-ls "nfs://%[1]s%[3]s?version=3&nfsport=%[2]d&mountport=%[2]d"
`, host, addr.Port, export)
}

// openNFSTree opens the export at url with the project's own NFS client.
func openNFSTree(ctx context.Context, url string) (treeReader, func() error, error) {
	o, err := nfs.New(ctx, url, nfs.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", url, err)
	}
	return o, o.Close, nil
}

// checkTree opens url with backend/nfs and compares it with the local tree.
func checkTree(ctx context.Context, tree, url string) (report, error) {
	start := time.Now()
	o, closeFn, err := openNFSTree(ctx, url)
	if err != nil {
		return report{}, err
	}
	rep, err := compareTree(ctx, tree, o)
	rep.Elapsed = time.Since(start)
	if cerr := closeFn(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", url, cerr)
	}
	return rep, err
}

// print writes the short self-check report.
func (r report) print(w io.Writer) {
	mibs := 0.0
	if s := r.Elapsed.Seconds(); s > 0 {
		mibs = float64(r.Bytes) / (1 << 20) / s
	}
	fmt.Fprintf(w, "self-check: %d files, %d dirs, %d symlinks, %d bytes read in %s (%.1f MiB/s), %d mismatch(es)\n",
		r.Files, r.Dirs, r.Symlinks, r.Bytes, r.Elapsed.Round(time.Millisecond), mibs, len(r.Mismatches))
	for i, m := range r.Mismatches {
		if i == 20 {
			fmt.Fprintf(w, "  ... and %d more\n", len(r.Mismatches)-i)
			break
		}
		fmt.Fprintf(w, "  MISMATCH %s\n", m)
	}
	if len(r.Mismatches) == 0 {
		fmt.Fprintln(w, "self-check: OK, every byte and attribute matched")
	}
}
