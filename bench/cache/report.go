package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Target is one of issue 5's ratios, measured in the same run.
type Target struct {
	Name string `json:"name"`
	// Ratio is Num/Den (or the value itself for a share); nil when a
	// measurement it needs is missing.
	Ratio *float64 `json:"ratio"`
	Op    string   `json:"op"` // ">=" or "<="
	Goal  float64  `json:"goal"`
	Met   *bool    `json:"met"`
	Num   string   `json:"numerator"`
	Den   string   `json:"denominator,omitempty"`
}

// Result is the file written to bench/results.
type Result struct {
	Meta         json.RawMessage `json:"meta,omitempty"`
	Targets      []Target        `json:"targets"`
	Info         []Target        `json:"info_ratios"`
	Measurements []Record        `json:"measurements"`
}

type key struct{ origin, mode, workload, client string }

func (k key) String() string {
	return fmt.Sprintf("%s %s %s (%s)", k.origin, k.mode, k.workload, k.client)
}

const ourClient = "backend/nfs"

func report(in, metaPath, out, plotDir, png string, w io.Writer) error {
	recs, err := readRecords(in)
	if err != nil {
		return err
	}
	res := Result{Measurements: recs}
	if metaPath != "" {
		b, err := os.ReadFile(metaPath)
		if err != nil {
			return fmt.Errorf("read meta: %w", err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("meta %s: not JSON", metaPath)
		}
		res.Meta = b
	}
	// the last record of a key wins (a re-run appends)
	m := map[key]Record{}
	for _, r := range recs {
		m[key{r.Origin, r.Mode, r.Workload, r.Client}] = r
	}
	val := func(k key) (float64, bool) { r, ok := m[k]; return r.Value, ok }
	ratio := func(name string, num, den key, op string, goal float64) Target {
		t := Target{Name: name, Op: op, Goal: goal, Num: num.String(), Den: den.String()}
		a, ok1 := val(num)
		b, ok2 := val(den)
		if ok1 && ok2 && b > 0 {
			t.set(a / b)
		}
		return t
	}
	// cold "no slower than 1.25x origin direct": time ratio = direct
	// throughput / cold throughput.
	slowdown := func(name, origin, workload string) Target {
		num, den := key{origin, "direct", workload, ourClient}, key{origin, "cold", workload, ourClient}
		t := Target{Name: name, Op: "<=", Goal: 1.25,
			Num: "time of " + den.String(), Den: "time of " + num.String()}
		a, ok1 := val(num)
		b, ok2 := val(den)
		if ok1 && ok2 && b > 0 {
			t.set(a / b)
		}
		return t
	}
	share := func(name, origin, mode string) Target {
		k := key{origin, mode, "train", ourClient}
		t := Target{Name: name, Op: "<=", Goal: 0.02, Num: k.String()}
		if v, ok := val(k); ok {
			t.set(v)
		}
		return t
	}
	k := func(o, mo, wl string) key { return key{o, mo, wl, ourClient} }
	res.Targets = []Target{
		ratio("warm small files/s vs origin behind the link", k("netlink", "warm", "small"), k("netlink", "direct", "small"), ">=", 8),
		ratio("warm small files/s vs ganesha on loopback", k("netlink", "warm", "small"), k("loopback", "direct", "small"), ">=", 1),
		ratio("warm 1 GiB read vs ganesha on loopback", k("netlink", "warm", "big"), k("loopback", "direct", "big"), ">=", 1),
		ratio("warm stat-tree vs origin behind the link", k("netlink", "warm", "stat"), k("netlink", "direct", "stat"), ">=", 5),
		slowdown("cold small-file epoch time vs origin direct, behind the link", "netlink", "small"),
		slowdown("cold small-file epoch time vs origin direct, loopback", "loopback", "small"),
		slowdown("cold 1 GiB read time vs origin direct, behind the link", "netlink", "big"),
		slowdown("cold 1 GiB read time vs origin direct, loopback", "loopback", "big"),
		share("training data-wait share, nascache warm, behind the link", "netlink", "warm"),
		share("training data-wait share, nascache warm, loopback", "loopback", "warm"),
	}
	for _, o := range []string{"loopback", "netlink"} {
		for _, wl := range []string{"small", "big", "stat"} {
			res.Info = append(res.Info,
				ratio(fmt.Sprintf("%s %s warm vs direct", o, wl), k(o, "warm", wl), k(o, "direct", wl), ">=", 1),
				ratio(fmt.Sprintf("%s %s cold vs direct", o, wl), k(o, "cold", wl), k(o, "direct", wl), ">=", 0.8))
		}
		for _, c := range []string{"libnfsread", "nfs-cp"} {
			res.Info = append(res.Info, ratio(fmt.Sprintf("%s big: backend/nfs vs %s, direct", o, c),
				k(o, "direct", "big"), key{o, "direct", "big", c}, ">=", 0.9))
		}
	}

	printTable(w, m, res.Targets)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if plotDir != "" {
		return writePlot(plotDir, png, m)
	}
	return nil
}

func (t *Target) set(r float64) {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return
	}
	met := r >= t.Goal
	if t.Op == "<=" {
		met = r <= t.Goal
	}
	t.Ratio, t.Met = &r, &met
}

func readRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read measurements: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	var recs []Record
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read measurements: %w", err)
	}
	return recs, nil
}

var (
	origins = []string{"loopback", "netlink"}
	modes   = []string{"direct", "cold", "warm"}
	rows    = []struct{ workload, client, label string }{
		{"rtt", ourClient, "LOOKUP, 1 in flight, median ms"},
		{"small", ourClient, "small files/s (backend/nfs, 32 files)"},
		{"big", ourClient, "big file MiB/s (backend/nfs, 32 x 1 MiB)"},
		{"big", "libnfsread", "big file MiB/s (libnfsread, 32 x 1 MiB)"},
		{"big", "nfs-cp", "big file MiB/s (libnfs nfs-cp)"},
		{"stat", ourClient, "stat-tree LOOKUP+GETATTR ops/s (32)"},
		{"train", ourClient, "training loop data-wait share (%)"},
	}
)

func printTable(w io.Writer, m map[key]Record, targets []Target) {
	fmt.Fprintf(w, "\n%-42s", "")
	for _, o := range origins {
		fmt.Fprintf(w, " | %-28s", o)
	}
	fmt.Fprintf(w, "\n%-42s", "measurement")
	for range origins {
		for _, mo := range modes {
			fmt.Fprintf(w, " %9s", mo)
		}
		fmt.Fprint(w, "  ")
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "%-42s", r.label)
		for _, o := range origins {
			for _, mo := range modes {
				rec, ok := m[key{o, mo, r.workload, r.client}]
				switch {
				case !ok:
					fmt.Fprintf(w, " %9s", "-")
				case r.workload == "train":
					fmt.Fprintf(w, " %8.1f%%", rec.Value*100)
				case rec.Value < 100:
					fmt.Fprintf(w, " %9.2f", rec.Value)
				default:
					fmt.Fprintf(w, " %9.0f", rec.Value)
				}
			}
			fmt.Fprint(w, "  ")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\ntargets (issue 5), ratios from this run:")
	for _, t := range targets {
		got, verdict := "not measured", "?"
		if t.Ratio != nil {
			got = fmt.Sprintf("%.3f", *t.Ratio)
			verdict = "MISSED"
			if *t.Met {
				verdict = "met"
			}
		}
		fmt.Fprintf(w, "  %-62s %12s  (goal %s %.2f)  %s\n", t.Name, got, t.Op, t.Goal, verdict)
	}
}

// writePlot writes one data file per panel and a gnuplot script drawing
// them as clustered bars (direct, cold, warm per origin) into png.
func writePlot(dir, png string, m map[key]Record) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot dir: %w", err)
	}
	panels := []struct{ file, workload, client, title string }{
		{"small.dat", "small", ourClient, "small files/s"},
		{"big.dat", "big", ourClient, "big file (1 GiB at scale 1), MiB/s"},
		{"stat.dat", "stat", ourClient, "stat-tree ops/s"},
		{"train.dat", "train", ourClient, "training data-wait share, %"},
	}
	var gp strings.Builder
	fmt.Fprintf(&gp, "set terminal pngcairo size 1600,500 noenhanced\nset output %q\n", png)
	gp.WriteString("set style data histogram\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n" +
		"set boxwidth 0.9\nset key top left\nset grid ytics\nset yrange [0:*]\n" +
		"set multiplot layout 1,4 title 'nascache cache benchmark: origin direct, nascache cold, nascache warm'\n")
	for _, p := range panels {
		var d strings.Builder
		d.WriteString("origin direct cold warm\n")
		for _, o := range origins {
			d.WriteString(o)
			for _, mo := range modes {
				if rec, ok := m[key{o, mo, p.workload, p.client}]; ok {
					v := rec.Value
					if p.workload == "train" {
						v *= 100
					}
					fmt.Fprintf(&d, " %g", v)
				} else {
					d.WriteString(" 0") // not measured: an empty bar
				}
			}
			d.WriteString("\n")
		}
		if err := os.WriteFile(filepath.Join(dir, p.file), []byte(d.String()), 0o644); err != nil {
			return fmt.Errorf("plot data: %w", err)
		}
		fmt.Fprintf(&gp, "set title %q\nplot for [i=2:4] %q using i:xtic(1) title columnheader(i)\n",
			p.title, filepath.Join(dir, p.file))
	}
	gp.WriteString("unset multiplot\n")
	if err := os.WriteFile(filepath.Join(dir, "plot.gp"), []byte(gp.String()), 0o644); err != nil {
		return fmt.Errorf("plot script: %w", err)
	}
	return nil
}
