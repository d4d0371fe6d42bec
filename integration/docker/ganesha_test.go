//go:build integration

package dockerorigin_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireEnv skips the test with a loud message when something it needs is missing, and fails it
// instead when CI=true: CI must never pass by skipping.
func requireEnv(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("docker"); err != nil {
		missing = append(missing, "the docker command")
	} else if out, err := exec.CommandContext(t.Context(), "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("a Docker engine (docker info: %v: %s)", err, bytes.TrimSpace(out)))
	}
	for _, tool := range []string{"nfs-cp", "nfs-ls", "nfs-cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install libnfs-utils)")
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (debootstrap builds the image; the test chowns files in the export)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "Docker origin test cannot run: missing " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED LOUDLY: " + msg)
}

// command runs name with args under ctx and returns its stdout; a failure reports stdout and
// stderr. imageEnv, when set, is added to the environment as GANESHA_IMAGE.
func command(ctx context.Context, imageEnv, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if imageEnv != "" {
		cmd.Env = append(os.Environ(), "GANESHA_IMAGE="+imageEnv)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s",
			name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// must runs command and fails the test on error.
func must(t *testing.T, imageEnv, name string, args ...string) string {
	t.Helper()
	out, err := command(t.Context(), imageEnv, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// origin is one running ganesha container as run-ganesha.sh reports it.
type origin struct {
	name, image, dir   string
	nfsPort, mountPort string
}

// url is the libnfs URL of path (relative to the export root) with extra query arguments.
func (o origin) url(path, query string) string {
	return fmt.Sprintf("nfs://127.0.0.1/export/%s?version=3&nfsport=%s&mountport=%s%s",
		strings.TrimPrefix(path, "/"), o.nfsPort, o.mountPort, query)
}

// run starts (or, for an existing container, waits for) the origin with run-ganesha.sh and parses
// the KEY=VALUE lines it prints.
func run(t *testing.T, name, image, dir string, hostPort ...string) origin {
	t.Helper()
	out := must(t, image, "./run-ganesha.sh", append([]string{name, dir}, hostPort...)...)
	kv := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	o := origin{name: name, image: image, dir: dir, nfsPort: kv["NFS_PORT"], mountPort: kv["MOUNT_PORT"]}
	if o.nfsPort == "" || o.mountPort == "" || kv["NAME"] != name {
		t.Fatalf("run-ganesha.sh printed no ports for %s:\n%s", name, out)
	}
	if want := fmt.Sprintf("nfs://127.0.0.1/export?version=3&nfsport=%s&mountport=%s", o.nfsPort, o.mountPort); kv["URL"] != want {
		t.Fatalf("run-ganesha.sh URL = %q, want %q", kv["URL"], want)
	}
	return o
}

// lsEntry is one line of nfs-ls output: mode, nlink, uid, gid, size, name.
type lsEntry struct{ uid, gid, size string }

// ls lists an NFS directory with nfs-ls.
func ls(t *testing.T, o origin, dir, query string) map[string]lsEntry {
	t.Helper()
	out := must(t, "", "nfs-ls", o.url(dir, query))
	entries := map[string]lsEntry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 {
			continue
		}
		entries[f[5]] = lsEntry{uid: f[2], gid: f[3], size: f[4]}
	}
	return entries
}

func owner(t *testing.T, path string) (uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestGaneshaContainer builds the image (cached after the first run), runs the origin on a fresh
// host directory and checks what nascache's NFS origin tests rely on: bytes in and out over
// NFSv3 from the host, changes made directly in the directory visible through NFS at once,
// AUTH_SYS owners kept, and a server that comes back on the same ports after docker stop/start.
func TestGaneshaContainer(t *testing.T) {
	requireEnv(t)
	buildCtx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	out, err := command(buildCtx, "", "./build-ganesha-image.sh")
	if err != nil {
		t.Fatal(err)
	}
	image := strings.TrimSpace(out)
	t.Logf("image %s", image)

	dir := t.TempDir()
	// The export root must be searchable by uid 1000 for the owner subtest.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("nascache-test-ganesha-%d", os.Getpid())
	t.Cleanup(func() {
		// t.Context is already cancelled here.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := command(ctx, "", "./stop-ganesha.sh", name); err != nil {
			t.Errorf("stop-ganesha.sh: %v", err)
			if _, err := command(ctx, "", "docker", "rm", "--force", name); err != nil {
				t.Errorf("docker rm: %v", err)
			}
		}
	})
	o := run(t, name, image, dir)
	t.Logf("origin %s: NFS 127.0.0.1:%s, MOUNT 127.0.0.1:%s, export %s", name, o.nfsPort, o.mountPort, dir)

	t.Run("Healthcheck", func(t *testing.T) {
		out := must(t, "", "docker", "exec", name, "ganesha-healthcheck")
		if !strings.HasPrefix(out, "ok:") {
			t.Fatalf("ganesha-healthcheck: %q", out)
		}
	})

	t.Run("CopyInAndOut64MiB", func(t *testing.T) {
		data := make([]byte, 64<<20)
		rand.NewChaCha8([32]byte{'n', 'a', 's'}).Read(data)
		local := t.TempDir()
		in, back := filepath.Join(local, "in.bin"), filepath.Join(local, "back.bin")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		must(t, "", "nfs-cp", in, o.url("big.bin", ""))
		atOrigin, err := os.ReadFile(filepath.Join(dir, "big.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(atOrigin, data) {
			t.Fatalf("big.bin in the host directory differs from what nfs-cp wrote (%d bytes, want %d)", len(atOrigin), len(data))
		}
		must(t, "", "nfs-cp", o.url("big.bin", ""), back)
		got, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("big.bin read back over NFS differs (%d bytes, want %d)", len(got), len(data))
		}
		if e := ls(t, o, "", "")["big.bin"]; e.size != fmt.Sprint(len(data)) {
			t.Fatalf("nfs-ls size of big.bin = %q, want %d", e.size, len(data))
		}
	})

	t.Run("DirectChangeVisibleAtOnce", func(t *testing.T) {
		path := filepath.Join(dir, "direct.txt")
		// Each version is read through NFS right after it is written at the origin: a grown, then
		// a shrunk file, so a stale cached size would cut or pad the content.
		for _, content := range []string{"one\n", "second version, longer than the first\n", "3\n"} {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := must(t, "", "nfs-cat", o.url("direct.txt", "")); got != content {
				t.Fatalf("nfs-cat direct.txt = %q, want %q (written directly in the host directory)", got, content)
			}
			if e := ls(t, o, "", "")["direct.txt"]; e.size != fmt.Sprint(len(content)) {
				t.Fatalf("nfs-ls size of direct.txt = %q, want %d", e.size, len(content))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "fresh.txt"), []byte("new\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, ok := ls(t, o, "", "")["fresh.txt"]; !ok {
			t.Fatal("fresh.txt, created directly in the host directory, is not listed by nfs-ls")
		}
	})

	t.Run("OwnerFromAuthSys", func(t *testing.T) {
		sub := filepath.Join(dir, "u1000")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sub, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "src")
		if err := os.WriteFile(src, []byte("owned by 1000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		const as1000 = "&uid=1000&gid=1000"
		must(t, "", "nfs-cp", src, o.url("u1000/owned.txt", as1000))
		if uid, gid := owner(t, filepath.Join(sub, "owned.txt")); uid != 1000 || gid != 1000 {
			t.Fatalf("u1000/owned.txt, created over NFS as 1000:1000, is owned by %d:%d in the host directory", uid, gid)
		}
		if e := ls(t, o, "u1000", as1000)["owned.txt"]; e.uid != "1000" || e.gid != "1000" {
			t.Fatalf("nfs-ls shows u1000/owned.txt owned by %s:%s, want 1000:1000", e.uid, e.gid)
		}
		// No_Root_Squash: root stays root.
		must(t, "", "nfs-cp", src, o.url("rootfile.txt", "&uid=0&gid=0"))
		if uid, gid := owner(t, filepath.Join(dir, "rootfile.txt")); uid != 0 || gid != 0 {
			t.Fatalf("rootfile.txt, created over NFS as 0:0, is owned by %d:%d", uid, gid)
		}
		// The credentials are enforced: 1000 may not create in the root-owned 0755 export root.
		if _, err := command(t.Context(), "", "nfs-cp", src, o.url("denied.txt", as1000)); err == nil {
			t.Fatal("uid 1000 created denied.txt in a root-owned 0755 directory")
		}
		if _, err := os.Stat(filepath.Join(dir, "denied.txt")); !os.IsNotExist(err) {
			t.Fatalf("denied.txt exists in the host directory (stat: %v)", err)
		}
	})

	t.Run("StopStartSamePorts", func(t *testing.T) {
		const kept = "written before the restart\n"
		if err := os.WriteFile(filepath.Join(dir, "kept.txt"), []byte(kept), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := must(t, "", "nfs-cat", o.url("kept.txt", "")); got != kept {
			t.Fatalf("before the restart nfs-cat kept.txt = %q", got)
		}
		must(t, "", "docker", "stop", "--time", "20", name)
		if code := strings.TrimSpace(must(t, "", "docker", "inspect", "--format", "{{.State.ExitCode}}", name)); code != "0" {
			t.Fatalf("container exit code after docker stop = %s, want 0 (clean shutdown on SIGTERM)", code)
		}
		must(t, "", "docker", "start", name)
		// For a running container, run-ganesha.sh only waits until it serves and reports its ports.
		again := run(t, name, image, dir)
		if again.nfsPort != o.nfsPort || again.mountPort != o.mountPort {
			t.Fatalf("after docker start the ports are %s/%s, were %s/%s", again.nfsPort, again.mountPort, o.nfsPort, o.mountPort)
		}
		logs, err := exec.CommandContext(t.Context(), "docker", "logs", name).CombinedOutput()
		if err != nil {
			t.Fatalf("docker logs: %v", err)
		}
		if n := bytes.Count(logs, []byte("ganesha-entrypoint: stopped cleanly")); n != 1 {
			t.Fatalf("the log has %d 'stopped cleanly' lines, want 1:\n%s", n, logs)
		}
		if n := bytes.Count(logs, []byte("ganesha-entrypoint: READY")); n != 2 {
			t.Fatalf("the log has %d READY lines, want 2 (one per start):\n%s", n, logs)
		}
		if got := must(t, "", "nfs-cat", again.url("kept.txt", "")); got != kept {
			t.Fatalf("after the restart nfs-cat kept.txt = %q, want %q", got, kept)
		}
	})
}
