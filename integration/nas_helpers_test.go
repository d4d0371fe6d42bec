//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests of nascache in front of a NAS: nfs-ganesha in Docker
// (integration/docker) is the origin, nascache runs on the host with an
// nfs:// origin, the kernel client in the guest mounts nascache.

// originWaitLimit bounds waits for the origin's state to change as seen by
// nascache (reconnect backoff is at most 2 s; the limit is generous for a
// loaded machine).
const originWaitLimit = 90 * time.Second

func dockerDir() string { return filepath.Join(repoRoot(), "integration", "docker") }

// nasContainer is one ganesha container made by run-ganesha.sh.
type nasContainer struct {
	t         *testing.T
	name, dir string
	nfsPort   int
	mountPort int
}

// requireDocker skips (fails under CI) without root and a Docker engine, and
// builds the ganesha image (cached after the first time).
func requireDocker(t *testing.T) {
	t.Helper()
	requireRoot(t)
	requireTools(t, "docker")
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing(t, "no Docker engine: %v: %s", err, out)
	}
	cmd := exec.Command(filepath.Join(dockerDir(), "build-ganesha-image.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-ganesha-image.sh: %v\n%s", err, out)
	}
}

// nasPorts picks the host ports a container will publish: NFS and NFS+1
// (MOUNT), free a moment ago. Tests that start nascache before the origin
// need them in advance.
func nasPorts(t *testing.T) int {
	t.Helper()
	for range 20 {
		p := freePort(t)
		if p < 65535 && portFree(p+1) {
			return p
		}
	}
	t.Fatal("no two adjacent free ports")
	return 0
}

func portFree(port int) bool {
	cmd := exec.Command("sh", "-c", "! ss -Htln 'sport = :"+strconv.Itoa(port)+"' | grep -q .")
	return cmd.Run() == nil
}

// startNAS runs a ganesha container exporting dir (as /export) on hostPort
// and hostPort+1, and removes it in t.Cleanup.
func startNAS(t *testing.T, dir string, hostPort int) *nasContainer {
	t.Helper()
	c := &nasContainer{t: t, name: fmt.Sprintf("nascache-nas-%d-%d", os.Getpid(), hostPort), dir: dir}
	t.Cleanup(func() {
		out, err := exec.Command(filepath.Join(dockerDir(), "stop-ganesha.sh"), c.name).CombinedOutput()
		if err != nil {
			t.Errorf("stop-ganesha.sh %s: %v\n%s", c.name, err, out)
		}
	})
	c.run(hostPort)
	return c
}

// run (re)starts the container and waits until it serves (run-ganesha.sh
// starts a stopped container again on the same ports).
func (c *nasContainer) run(hostPort int) {
	t := c.t
	t.Helper()
	args := []string{c.name, c.dir}
	if hostPort != 0 {
		args = append(args, strconv.Itoa(hostPort))
	}
	out, err := exec.Command(filepath.Join(dockerDir(), "run-ganesha.sh"), args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("run-ganesha.sh %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			kv[k] = v
		}
	}
	c.nfsPort, _ = strconv.Atoi(kv["NFS_PORT"])
	c.mountPort, _ = strconv.Atoi(kv["MOUNT_PORT"])
	if c.nfsPort == 0 || c.mountPort == 0 {
		t.Fatalf("run-ganesha.sh printed no ports:\n%s", out)
	}
	t.Logf("origin container %s serves %s on NFS %d, MOUNT %d", c.name, c.dir, c.nfsPort, c.mountPort)
}

// stop is `docker stop`: the NAS goes away, its data stays.
func (c *nasContainer) stop() {
	c.t.Helper()
	if out, err := exec.Command("docker", "stop", c.name).CombinedOutput(); err != nil {
		c.t.Fatalf("docker stop %s: %v\n%s", c.name, err, out)
	}
	c.t.Logf("origin container %s stopped", c.name)
}

// originURL is nascache's origin URL for a container on hostPort.
func originURL(hostPort int) string {
	return fmt.Sprintf("nfs://127.0.0.1:%d/export?mountport=%d", hostPort, hostPort+1)
}

// nasExport is a nascache export of the NAS on hostPort.
func nasExport(path string, hostPort int) ncExport {
	return ncExport{Path: path, Origin: originURL(hostPort), Clients: []string{"127.0.0.0/8"}, Squash: "none"}
}

// metric returns the value of the sample of nascache's /metrics whose name
// and labels are exactly sample (e.g. `nascache_origin_up{export="/nas"}`),
// or -1 if there is none.
func (p *nascacheProc) metric(sample string) float64 {
	p.t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.cfg.AdminListen + "/metrics")
	if err != nil {
		p.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("GET /metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				p.t.Fatalf("metric %s: %q", sample, line)
			}
			return v
		}
	}
	return -1
}

// waitMetric waits (bounded) until ok(value of sample) holds.
func (p *nascacheProc) waitMetric(sample string, what string, ok func(float64) bool) {
	p.t.Helper()
	deadline := time.Now().Add(originWaitLimit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		v := p.metric(sample)
		if ok(v) {
			p.t.Logf("nascache: %s (%s = %v)", what, sample, v)
			return
		}
		if time.Now().After(deadline) {
			p.logTail(40)
			p.t.Fatalf("nascache: not %s within %v (%s = %v)", what, originWaitLimit, sample, v)
		}
		<-tick.C
	}
}

// logHas reports whether nascache's log holds a line containing s.
func (p *nascacheProc) logHas(s string) bool {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Fatalf("nascache log: %v", err)
	}
	return strings.Contains(string(data), s)
}
