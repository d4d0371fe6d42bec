//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// nascacheBuild is the result of building ./cmd/nascache once in TestMain;
// tests only read it.
var nascacheBuild struct {
	bin string // path of the built binary, "" if the build failed
	err error  // why the build failed
}

// Bounds for waits on other processes. They are limits on how long to wait
// for an event, not timed assertions: every wait ends as soon as the event
// happens.
const (
	serverStartLimit = 60 * time.Second
	serverStopLimit  = 10 * time.Second
	guestTimeLimit   = 900 * time.Second
)

func TestMain(m *testing.M) {
	if bin := os.Getenv("NASCACHE_BIN"); bin != "" { // test a given binary
		nascacheBuild.bin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "nascache-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		os.Exit(2)
	}
	bin := filepath.Join(dir, "nascache")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/nascache")...)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		nascacheBuild.err = fmt.Errorf("go build ./cmd/nascache: %w\n%s", err, out)
	} else {
		nascacheBuild.bin = bin
	}
	code := m.Run()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "integration: remove", dir, err)
	}
	os.Exit(code)
}

// repoRoot is the module root: the parent of this package's directory.
func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("integration: runtime.Caller failed")
	}
	return filepath.Dir(filepath.Dir(file))
}

func guestDir() string    { return filepath.Join(repoRoot(), "integration", "guest") }
func workloadDir() string { return filepath.Join(repoRoot(), "integration", "workloads") }

// missing reports a missing test dependency: a loud skip locally, a failure
// when CI=true (CI installs everything, so a missing tool there is a bug).
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "MISSING TEST DEPENDENCY: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("\n\n!!!!!!!! SKIPPED !!!!!!!!\n" + msg + "\n")
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, "%s not found in PATH\n    (apt-get install -y --no-install-recommends "+
				"qemu-system-x86 busybox-static libnfs-utils nfs-ganesha nfs-ganesha-vfs)", tool)
		}
	}
}

// guestCache is where build-guest.sh keeps the guest ($KVMNFS_CACHE).
func guestCache() string {
	if d := os.Getenv("KVMNFS_CACHE"); d != "" {
		return d
	}
	return "/var/tmp/kvm-nfs-client"
}

// requireGuest checks what run-guest.sh needs on the host and builds the
// guest (kernel + initramfs, guest/build-guest.sh) if it is not there yet, so
// that guests started side by side never race to build it.
func requireGuest(t *testing.T) {
	t.Helper()
	requireTools(t, "qemu-system-x86_64", "busybox")
	g := filepath.Join(guestCache(), "guest")
	if _, err := os.Stat(filepath.Join(g, "initramfs.cpio.gz")); err == nil {
		if _, err := os.Stat(filepath.Join(g, "vmlinuz")); err == nil {
			return
		}
	}
	cmd := exec.Command(filepath.Join(guestDir(), "build-guest.sh"), guestCache())
	out, err := cmd.CombinedOutput()
	t.Logf("build-guest.sh:\n%s", out)
	if err != nil {
		missing(t, "the guest could not be built (build-guest.sh: %v)", err)
	}
}

func requireGanesha(t *testing.T) {
	t.Helper()
	requireTools(t, "ganesha.nfsd", "rpcbind", "rpcinfo")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"); err != nil {
		missing(t, "nfs-ganesha-vfs (FSAL_VFS) is not installed")
	}
	if os.Geteuid() != 0 {
		missing(t, "nfs-ganesha needs root")
	}
}

func requireNascache(t *testing.T) string {
	t.Helper()
	if nascacheBuild.bin == "" {
		missing(t, "the nascache binary does not build: %v", nascacheBuild.err)
	}
	return nascacheBuild.bin
}

// requireRoot: chown to other uids at the origin needs root on the host.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "this test must run as root (it chowns files at the origin)")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("free port: close: %v", err)
	}
	return port
}

// nfsServer is what a guest or libnfs client needs to reach a server.
type nfsServer struct {
	Port      int    // NFS port on 127.0.0.1
	MountPort int    // MOUNT port on 127.0.0.1 (the same as Port for nascache)
	Export    string // the path clients mount
}

// libnfsURL is the libnfs URL of PATH (relative, may be "") in the export.
func (s nfsServer) libnfsURL(path string) string {
	p := strings.TrimSuffix(s.Export, "/")
	if path != "" {
		p += "/" + strings.TrimPrefix(path, "/")
	}
	return fmt.Sprintf("nfs://127.0.0.1%s?version=3&nfsport=%d&mountport=%d", p, s.Port, s.MountPort)
}

// --- nascache ----------------------------------------------------------------

// ncExport and ncConfig are the YAML config of `nascache serve --config`.
type ncExport struct {
	Path     string   `yaml:"path"`
	Origin   string   `yaml:"origin"`
	Clients  []string `yaml:"clients,omitempty"`
	ReadOnly bool     `yaml:"read_only"`
	Squash   string   `yaml:"squash"`
}

type ncConfig struct {
	Listen        string     `yaml:"listen"`
	PortmapListen string     `yaml:"portmap_listen"`
	AdminListen   string     `yaml:"admin_listen"`
	DataDir       string     `yaml:"data_dir"`
	Exports       []ncExport `yaml:"exports"`
}

// localExport is an export of the local directory dir, open to loopback.
func localExport(path, dir string) ncExport {
	return ncExport{Path: path, Origin: "file://" + dir, Clients: []string{"127.0.0.0/8"}, Squash: "none"}
}

// nascacheProc is one nascache child process and what is needed to start it
// again on the same ports and data_dir (the kill -9 test).
type nascacheProc struct {
	t       *testing.T
	bin     string
	cfg     ncConfig
	port    int
	cfgPath string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd.Wait returned
	waitErr error         // set before exited is closed
}

// startNascache writes a config for exports (data_dir and ports chosen here),
// starts nascache and waits until it is ready. It is stopped in t.Cleanup.
func startNascache(t *testing.T, exports ...ncExport) *nascacheProc {
	t.Helper()
	bin := requireNascache(t)
	dir := t.TempDir()
	port := freePort(t)
	p := &nascacheProc{
		t:   t,
		bin: bin,
		cfg: ncConfig{
			Listen:      fmt.Sprintf("127.0.0.1:%d", port),
			AdminListen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			DataDir:     filepath.Join(dir, "data"),
			Exports:     exports,
		},
		port:    port,
		cfgPath: filepath.Join(dir, "nascache.yaml"),
		logPath: filepath.Join(dir, "nascache.log"),
	}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if data, err := os.ReadFile(p.logPath); err == nil {
			if i := bytes.Index(data, []byte("WARNING: DATA RACE")); i >= 0 {
				report := strings.Split(string(data[i:]), "\n")
				t.Errorf("nascache (built with -race) reported a data race:\n%s", strings.Join(report[:min(len(report), 80)], "\n"))
			}
		}
		if t.Failed() {
			p.logTail(60)
		}
	})
	return p
}

func (p *nascacheProc) server(export string) nfsServer {
	return nfsServer{Port: p.port, MountPort: p.port, Export: export}
}

// setExports rewrites the export list; it takes effect at the next start.
func (p *nascacheProc) setExports(exports ...ncExport) { p.cfg.Exports = exports }

// start writes the config and starts nascache; it returns once /healthz
// answers 200, and fails the test if the process exits first or does not get
// ready within serverStartLimit.
func (p *nascacheProc) start() {
	t := p.t
	t.Helper()
	data, err := yaml.Marshal(p.cfg)
	if err != nil {
		t.Fatalf("nascache config: %v", err)
	}
	if err := os.WriteFile(p.cfgPath, data, 0o644); err != nil {
		t.Fatalf("nascache config: %v", err)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("nascache log: %v", err)
	}
	fmt.Fprintf(logf, "=== %s nascache serve --config %s\n", time.Now().Format(time.RFC3339Nano), p.cfgPath)
	cmd := exec.Command(p.bin, "serve", "--config", p.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start nascache: %v", err)
	}
	p.cmd, p.exited, p.waitErr = cmd, make(chan struct{}), nil
	go func(exited chan struct{}) {
		err := cmd.Wait()
		logf.Close()
		p.waitErr = err
		close(exited)
	}(p.exited)
	t.Logf("nascache pid %d: NFS+MOUNT 127.0.0.1:%d, admin %s, config:\n%s", cmd.Process.Pid, p.port, p.cfg.AdminListen, data)

	// Bounded wait for readiness: /healthz answers once the listeners are up.
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + p.cfg.AdminListen + "/healthz"
	deadline := time.Now().Add(serverStartLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			p.logTail(40)
			t.Fatalf("nascache exited during start-up: %v", p.waitErr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			p.logTail(40)
			t.Fatalf("nascache not ready within %v (last /healthz: %v)", serverStartLimit, err)
		}
	}
}

// kill9 kills nascache with SIGKILL (no clean shutdown) and waits for it.
func (p *nascacheProc) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill -9 nascache: %v", err)
	}
	<-p.exited
	p.t.Logf("nascache pid %d killed with SIGKILL", p.cmd.Process.Pid)
}

// stop sends SIGTERM, then SIGKILL after serverStopLimit, and waits.
func (p *nascacheProc) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Logf("SIGTERM nascache: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(serverStopLimit):
		p.t.Errorf("nascache pid %d ignored SIGTERM for %v; sending SIGKILL", p.cmd.Process.Pid, serverStopLimit)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// logTail copies the last n lines of nascache's log into the test log.
func (p *nascacheProc) logTail(n int) {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Logf("nascache log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	p.t.Logf("nascache log (last %d lines):\n%s", len(lines), strings.Join(lines, "\n"))
}

// --- nfs-ganesha ---------------------------------------------------------------

// startGanesha exports dir with nfs-ganesha (guest/start-ganesha.sh) and stops
// it in t.Cleanup. Its v3 export path is dir itself.
func startGanesha(t *testing.T, dir string) nfsServer {
	t.Helper()
	requireGanesha(t)
	state := t.TempDir()
	port := freePort(t)
	mport := freePort(t)
	env := append(os.Environ(), "GANESHA_STATE_ROOT="+state)
	run := func(args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		t.Logf("%s: %s", filepath.Base(args[0]), strings.TrimSpace(string(out)))
		return err
	}
	if err := run(filepath.Join(guestDir(), "start-ganesha.sh"), dir, strconv.Itoa(port), strconv.Itoa(mport)); err != nil {
		t.Fatalf("start-ganesha.sh: %v", err)
	}
	t.Cleanup(func() {
		if err := run(filepath.Join(guestDir(), "stop-ganesha.sh"), strconv.Itoa(port)); err != nil {
			t.Errorf("stop-ganesha.sh: %v", err)
		}
	})
	return nfsServer{Port: port, MountPort: mport, Export: dir}
}

// --- the guest -------------------------------------------------------------------

// guestRun describes one boot of the kernel-client guest.
type guestRun struct {
	Script string // file name in integration/workloads
	InHost bool   // KVMNFS_IN_HOST=1: run the script with the host's bash and tools
	Opts   string // extra mount options (KVMNFS_OPTS)
	// OnLine, if set, sees every line the guest prints, as it is printed; the
	// guest waits while it runs (it can restart servers, check the origin).
	OnLine func(line string)
}

// runGuest boots the guest against srv, streams its output into the test log
// and returns its lines and run-guest.sh's exit code (the script's own, or
// 124 timeout, 125 mount/network failure, 126 guest died).
func runGuest(t *testing.T, srv nfsServer, g guestRun) (lines []string, rc int) {
	t.Helper()
	requireGuest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(guestDir(), "run-guest.sh"),
		strconv.Itoa(srv.Port), strconv.Itoa(srv.MountPort), srv.Export, filepath.Join(workloadDir(), g.Script))
	cmd.Env = append(os.Environ(),
		"KVMNFS_TIMEOUT="+strconv.Itoa(int(guestTimeLimit/time.Second)),
		"KVMNFS_OPTS="+g.Opts,
		"TMPDIR="+t.TempDir())
	if g.InHost {
		cmd.Env = append(cmd.Env, "KVMNFS_IN_HOST=1")
	}
	// Own process group, so that an aborted test takes qemu down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second // if a grandchild keeps the output pipe open
	pr, pw := io.Pipe()
	defer pr.Close() // unblocks the output copier if we leave early (t.Fatal in OnLine)
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("run-guest.sh: %v", err)
	}
	waitErr := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.CloseWithError(io.EOF)
		waitErr <- err
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		t.Logf("guest[%s] %s", g.Script, line)
		lines = append(lines, line)
		if g.OnLine != nil {
			g.OnLine(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading guest output: %v", err)
	}
	err := <-waitErr
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		rc = 0
	case errors.As(err, &exitErr):
		rc = exitErr.ExitCode()
	default:
		t.Fatalf("run-guest.sh: %v", err)
	}
	t.Logf("guest[%s] exit code %d after %v", g.Script, rc, time.Since(start).Round(100*time.Millisecond))
	return lines, rc
}

// --- small helpers ------------------------------------------------------------

// sha256File returns the hex SHA-256 of a file.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("checksum %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeRandomFile writes size bytes of a deterministic pseudo-random stream
// (seeded) to path and returns their hex SHA-256.
func writeRandomFile(t *testing.T, path string, size int64, seed uint64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	buf := make([]byte, 1<<20)
	x := seed | 1
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		for i := int64(0); i < n; i += 8 { // xorshift64*: fast, deterministic
			x ^= x >> 12
			x ^= x << 25
			x ^= x >> 27
			v := x * 2685821657736338717
			for j := int64(0); j < 8 && i+j < n; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := w.Write(buf[:n]); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeFileAtomic writes data to path through a rename, so that a reader
// polling for path never sees it partly written.
func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("rename %s: %v", tmp, err)
	}
}

// prefixed returns the lines that start with prefix, with prefix removed.
func prefixed(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}
