//go:build integration

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestPortmapPlainMount proves that `mount -t nfs -o vers=3,nolock host:/data`
// works against nascache with no rpcbind anywhere: nascache's portmapper
// responder answers the kernel's GETPORT calls on port 111.
//
// Port 111 is shared by every process on the host's loopback (a ganesha start
// runs a temporary rpcbind there), so nascache and the guest run in a network
// namespace of their own: QEMU's user networking then maps the guest's
// 10.0.2.2 to that namespace's loopback.
func TestPortmapPlainMount(t *testing.T) {
	requireGuest(t)
	requireRoot(t)
	requireTools(t, "ip")
	bin := requireNascache(t)

	ns := fmt.Sprintf("ncpm%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns, err, out)
		}
	})
	ip("-n", ns, "link", "set", "lo", "up")

	origin := t.TempDir()
	if err := os.WriteFile(filepath.Join(origin, "hello.txt"), []byte("hello through the portmapper\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := ncConfig{
		Listen:        "127.0.0.1:20049", // not 2049: only the portmapper can tell the kernel this port
		PortmapListen: "127.0.0.1:111",
		AdminListen:   "",
		DataDir:       filepath.Join(dir, "data"),
		Exports:       []ncExport{localExport("/data", origin)},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "nascache.yaml")
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// Readiness through sd_notify: a unix socket lives in the file system,
	// so it reaches across the network namespace.
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	logPath := filepath.Join(dir, "nascache.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nascache in %s: %v", ns, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("nascache log:\n%s", b)
			}
		}
	})

	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				ready <- err
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				ready <- nil
				return
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("waiting for READY=1: %v", err)
		}
	case err := <-exited:
		t.Fatalf("nascache exited before it was ready: %v", err)
	case <-time.After(serverStartLimit):
		t.Fatalf("nascache not ready after %v", serverStartLimit)
	}

	// run-guest.sh itself mounts with explicit ports; the script then mounts
	// again with none. The guest's QEMU runs inside the namespace.
	requireGuest(t)
	script := filepath.Join(workloadDir(), "portmap.sh")
	g := exec.Command("ip", "netns", "exec", ns, filepath.Join(guestDir(), "run-guest.sh"), "20049", "20049", "/data", script)
	g.Env = append(os.Environ(), "KVMNFS_TIMEOUT=300", "TMPDIR="+t.TempDir())
	out, err := g.CombinedOutput()
	t.Logf("guest output:\n%s", out)
	if err != nil {
		t.Fatalf("run-guest.sh in %s: %v", ns, err)
	}
	lines := strings.Split(string(out), "\n")
	if got := prefixed(lines, "PM-MOUNT "); len(got) != 1 || !strings.HasPrefix(got[0], "ok") {
		t.Fatalf("plain mount through the portmapper: %q", got)
	}
	if got := prefixed(lines, "PM-READ "); len(got) != 1 || got[0] != "hello through the portmapper" {
		t.Errorf("read through the plain mount: %q", got)
	}
}
