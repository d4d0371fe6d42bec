package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr error
	}{
		{[]string{"-a", "nfs://h/x", "-b", "nfs://h/y"}, nil},
		{[]string{"-a", "nfs://h/x"}, errUsage},
		{[]string{"-a", "nfs://h/x", "-b", "nfs://h/y", "-n", "0"}, errUsage},
		{[]string{"-a", "nfs://h/x", "-b", "nfs://h/y", "extra"}, errUsage},
		{[]string{"-nosuchflag"}, errUsage},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("parseFlags(%q) = %v, want %v", tc.args, err, tc.wantErr)
		}
	}
}

func TestReport(t *testing.T) {
	cfg, err := parseFlags([]string{"-a", "nfs://h/x", "-a-name", "nascache", "-b", "nfs://h/y", "-b-name", "ganesha", "-rounds", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res := [][2][]float64{
		{{100, 300}, {100, 100}},
		{{50, 50}, {0, 0}},
		{{10, 10}, {20, 20}},
		{{30, 30}, {30, 30}},
	}
	r := newReport(cfg, time.Date(2026, 11, 25, 5, 0, 0, 0, time.UTC), res)
	wantRatios := []float64{2, 0, 0.5, 1}
	for i, row := range r.Results {
		if row.Ratio != wantRatios[i] {
			t.Errorf("%s: ratio %v, want %v", row.Metric, row.Ratio, wantRatios[i])
		}
	}
	var table bytes.Buffer
	if err := r.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "nascache/ganesha") || !strings.Contains(table.String(), "2.00x") {
		t.Errorf("table lacks the ratio column:\n%s", table.String())
	}
	path := filepath.Join(t.TempDir(), "sub", "serve.json")
	if err := r.writeJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 4 || back.Results[0].Median != [2]float64{200, 100} || back.Servers[1].Name != "ganesha" {
		t.Errorf("JSON round trip: %+v", back)
	}
}

func TestResultName(t *testing.T) {
	got := resultName(time.Date(2026, 11, 25, 5, 1, 2, 0, time.UTC), [2]server{{Name: "nascache/pool"}, {Name: "ganesha"}})
	if want := "serve-20261125-050102-nascache_pool-vs-ganesha.json"; got != want {
		t.Errorf("resultName = %q, want %q", got, want)
	}
}
