package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what a run writes as JSON.
type report struct {
	Started     time.Time   `json:"started"`
	Host        string      `json:"host"`
	LoadAverage string      `json:"load_average,omitempty"`
	Servers     [2]server   `json:"servers"`
	File        string      `json:"file"`
	Dir         string      `json:"dir"`
	Outstanding int         `json:"outstanding"`
	Conns       int         `json:"conns"`
	Duration    string      `json:"duration"`
	Rounds      int         `json:"rounds"`
	Results     []resultRow `json:"results"`
}

// resultRow is one metric: the figure of every round on each server,
// their medians and the ratio of A's median to B's.
type resultRow struct {
	Metric string       `json:"metric"`
	Unit   string       `json:"unit"`
	Values [2][]float64 `json:"values"`
	Median [2]float64   `json:"median"`
	// Ratio is Median[0] / Median[1] (0 when B's median is 0).
	Ratio float64 `json:"ratio"`
}

func newReport(cfg config, started time.Time, res [][2][]float64) report {
	r := report{
		Started: started, Servers: cfg.servers, File: cfg.file, Dir: cfg.dir,
		Outstanding: cfg.outstanding, Conns: cfg.conns, Duration: cfg.duration.String(), Rounds: cfg.rounds,
	}
	r.Host, _ = os.Hostname() // only a label
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	for i, m := range metrics(cfg) {
		r.Results = append(r.Results, newRow(m, res[i]))
	}
	return r
}

func newRow(m metric, v [2][]float64) resultRow {
	row := resultRow{Metric: m.Name, Unit: m.Unit, Values: v}
	for s := range v {
		row.Median[s] = median(v[s])
	}
	if row.Median[1] != 0 {
		row.Ratio = row.Median[0] / row.Median[1]
	}
	return row
}

// median of vs (0 for none); the mean of the middle two for an even count.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "metric\tunit\t%s\t%s\t%s/%s\t\n", r.Servers[0].Name, r.Servers[1].Name, r.Servers[0].Name, r.Servers[1].Name)
	for _, row := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.2fx\t\n", row.Metric, row.Unit, row.Median[0], row.Median[1], row.Ratio)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	_, err := fmt.Fprintf(w, "median of %d rounds; load average at the end: %s\n", r.Rounds, r.LoadAverage)
	return err
}

func (r report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
