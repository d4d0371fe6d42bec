package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// cpuWatch samples the CPU time of named processes (nascache, ganesha)
// and of this process and its children (the client), so a record says
// where the cores went during a measurement.
type cpuWatch struct {
	pids  map[string]int
	start map[string]float64
}

// parsePids reads "name=pid,name=pid".
func parsePids(s string) (map[string]int, error) {
	m := map[string]int{}
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		name, v, ok := strings.Cut(kv, "=")
		pid, err := strconv.Atoi(v)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("%w: --cpu-pids %q: want name=pid,...", errUsage, s)
		}
		m[name] = pid
	}
	return m, nil
}

func startCPU(pids map[string]int) *cpuWatch {
	w := &cpuWatch{pids: pids}
	w.start = w.sample()
	return w
}

func (w *cpuWatch) sample() map[string]float64 {
	m := map[string]float64{}
	for name, pid := range w.pids {
		if s, err := procCPU(pid); err == nil {
			m[name] = s
		}
	}
	var self, kids syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) == nil && syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids) == nil {
		m["client"] = tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	}
	return m
}

// stop adds "cpu_s_NAME" (core-seconds used since start) to extra.
func (w *cpuWatch) stop(extra map[string]float64) {
	for name, end := range w.sample() {
		if s, ok := w.start[name]; ok {
			extra["cpu_s_"+name] = end - s
		}
	}
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// procCPU returns utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	// the command name (field 2) may hold spaces; fields after ")" are fixed
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of pid %d: malformed stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu of pid %d: malformed stat", pid)
	}
	return float64(ut+st) / clockTicks, nil
}
