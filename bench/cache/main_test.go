package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	tests := []struct {
		scale                     float64
		small, sdirs, empty, edir int
		big                       uint64
	}{
		{1, 20000, 100, 50000, 500, 1 << 30},
		{0.05, 1000, 5, 2500, 25, 51 << 20},
		{0.0001, 2, 1, 5, 1, 1 << 20},
	}
	for _, tt := range tests {
		d := layout(tt.scale, 1)
		if d.SmallFiles != tt.small || d.SmallDirs != tt.sdirs || d.EmptyFiles != tt.empty ||
			d.EmptyDirs != tt.edir || d.BigBytes != tt.big || d.BigFiles != 4 {
			t.Errorf("layout(%v) = %+v", tt.scale, d)
		}
	}
}

func TestGenerateAndCheck(t *testing.T) {
	dir := t.TempDir()
	ds, made, err := generate(dir, 0.0001, 3, 2)
	if err != nil || !made {
		t.Fatalf("generate: %v, made %v", err, made)
	}
	var sum uint64
	for i := range ds.SmallFiles {
		d, name := ds.smallPath(i)
		b, err := os.ReadFile(filepath.Join(dir, d, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != ds.smallSize(i) || len(b) < smallMinBytes || len(b) > smallMaxBytes {
			t.Errorf("%s: %d bytes", name, len(b))
		}
		if err := checkSmall(ds, name, b[:checkBytes]); err != nil {
			t.Errorf("checkSmall(%s): %v", name, err)
		}
		b[10] ^= 1
		if err := checkSmall(ds, name, b[:checkBytes]); !errors.Is(err, errBadContent) {
			t.Errorf("checkSmall(%s) of altered bytes = %v, want errBadContent", name, err)
		}
		sum += uint64(len(b))
	}
	if sum != ds.SmallBytes {
		t.Errorf("small bytes %d, manifest %d", sum, ds.SmallBytes)
	}
	big, err := os.ReadFile(filepath.Join(dir, ds.bigPath(2)))
	if err != nil || uint64(len(big)) != ds.BigBytes {
		t.Fatalf("big file: %d bytes, %v", len(big), err)
	}
	if err := checkPrefix(big[:checkBytes], ds.Seed, 1<<40+2); err != nil {
		t.Errorf("big file content: %v", err)
	}
	if _, made, err := generate(dir, 0.0001, 3, 2); err != nil || made {
		t.Errorf("second generate: made %v, err %v; want a reuse", made, err)
	}
	if _, _, err := generate(dir, 0.0002, 3, 2); !errors.Is(err, errOtherDataset) {
		t.Errorf("generate with another scale: %v, want errOtherDataset", err)
	}
}

func TestReportTargets(t *testing.T) {
	dir := t.TempDir()
	recs := []Record{
		{Origin: "netlink", Mode: "direct", Workload: "small", Client: ourClient, Value: 100},
		{Origin: "netlink", Mode: "cold", Workload: "small", Client: ourClient, Value: 50},
		{Origin: "netlink", Mode: "warm", Workload: "small", Client: ourClient, Value: 900},
		{Origin: "loopback", Mode: "direct", Workload: "small", Client: ourClient, Value: 1000},
		{Origin: "netlink", Mode: "warm", Workload: "train", Client: ourClient, Value: 0.01},
	}
	var lines []string
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	in := filepath.Join(dir, "m.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.json")
	var table strings.Builder
	if err := report(in, "", out, filepath.Join(dir, "plot"), filepath.Join(dir, "x.png"), &table); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		ratio float64
		met   bool
	}{
		"warm small files/s vs origin behind the link":                 {9, true},
		"warm small files/s vs ganesha on loopback":                    {0.9, false},
		"cold small-file epoch time vs origin direct, behind the link": {2, false},
		"training data-wait share, nascache warm, behind the link":     {0.01, true},
	}
	seen := 0
	for _, tg := range res.Targets {
		w, ok := want[tg.Name]
		if !ok {
			if tg.Ratio != nil || tg.Met != nil {
				t.Errorf("%s: ratio %v without its measurements", tg.Name, *tg.Ratio)
			}
			continue
		}
		seen++
		if tg.Ratio == nil || *tg.Ratio < w.ratio-1e-9 || *tg.Ratio > w.ratio+1e-9 || *tg.Met != w.met {
			t.Errorf("%s: ratio %v met %v, want %v %v", tg.Name, tg.Ratio, tg.Met, w.ratio, w.met)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of %d targets", seen, len(want))
	}
	if !strings.Contains(table.String(), "MISSED") || !strings.Contains(table.String(), "not measured") {
		t.Errorf("table lacks verdicts:\n%s", table.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "plot", "plot.gp")); err != nil {
		t.Errorf("plot script: %v", err)
	}
}
