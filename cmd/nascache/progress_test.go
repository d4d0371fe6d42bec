package main

import (
	"bytes"
	"testing"
)

func f64(v float64) *float64 { return &v }

// progressCases are job views and the lines they render to, on a terminal
// and in plain mode.
var progressCases = []struct {
	name       string
	v          warmJobView
	tty, plain string
}{
	{
		name:  "just started",
		v:     warmJobView{ID: "ab12", State: jobRunning},
		tty:   "[....................]    ?  0/0 files  0/0 B  0 B/s",
		plain: "warm ab12 running: 0/0 files, 0 B/0 B, 0 B/s, ETA ?, 0 errors",
	},
	{
		name: "by bytes",
		v: warmJobView{ID: "ab12", State: jobRunning, FilesDone: 1234, FilesTotal: 3456,
			BytesDone: 1288490189, BytesTotal: 3650722202, BytesPerSecond: 89443533, ETASeconds: f64(26.4)},
		tty:   "[#######.............]  35%  1234/3456 files  1.2/3.4 GiB  85.3 MiB/s  ETA 26s",
		plain: "warm ab12 running: 1234/3456 files, 1.2 GiB/3.4 GiB, 85.3 MiB/s, ETA 26s, 0 errors",
	},
	{
		name: "by files, errors, long ETA",
		v: warmJobView{ID: "ab12", State: jobRunning, FilesDone: 10, FilesTotal: 40,
			BytesDone: 2048, BytesPerSecond: 10.4, Errors: 2, ETASeconds: f64(3*3600 + 25*60 + 9)},
		tty:   "[#####...............]  25%  10/40 files  2.0 KiB  10 B/s  ETA 3h25m  2 error(s)",
		plain: "warm ab12 running: 10/40 files, 2.0 KiB, 10 B/s, ETA 3h25m, 2 errors",
	},
	{
		name: "done",
		v: warmJobView{ID: "ab12", State: jobDone, FilesDone: 3456, FilesTotal: 3456,
			BytesDone: 3650722202, BytesTotal: 3650722202, BytesPerSecond: 89443533, ElapsedSeconds: 40.8},
		tty:   "[####################] 100%  3456/3456 files  3.4/3.4 GiB  85.3 MiB/s  done in 41s",
		plain: "warm ab12 done: 3456/3456 files, 3.4 GiB/3.4 GiB, 85.3 MiB/s, took 41s, 0 errors",
	},
	{
		name: "failed",
		v: warmJobView{ID: "ab12", State: jobFailed, FilesDone: 3, FilesTotal: 9, BytesDone: 3 << 20,
			BytesTotal: 9 << 20, BytesPerSecond: 1 << 20, ElapsedSeconds: 183, Error: "/data: origin down"},
		tty:   "[######..............]  33%  3/9 files  3.0/9.0 MiB  1.0 MiB/s  failed in 3m03s",
		plain: "warm ab12 failed: 3/9 files, 3.0 MiB/9.0 MiB, 1.0 MiB/s, took 3m03s, 0 errors: /data: origin down",
	},
}

func TestProgressLines(t *testing.T) {
	for _, tt := range progressCases {
		if got := ttyLine(tt.v); got != tt.tty {
			t.Errorf("%s: tty\n got %q\nwant %q", tt.name, got, tt.tty)
		}
		if got := plainLine(tt.v); got != tt.plain {
			t.Errorf("%s: plain\n got %q\nwant %q", tt.name, got, tt.plain)
		}
	}
}

// TestProgressRenderer checks the bytes written: a terminal line redrawn
// in place and ended once; plain lines one per update.
func TestProgressRenderer(t *testing.T) {
	running, done := progressCases[1].v, progressCases[3].v

	var b bytes.Buffer
	r := &progressRenderer{w: &b, tty: true}
	r.update(running)
	r.update(running)
	r.note("cancelling")
	r.finish(done)
	want := "\r" + progressCases[1].tty + "\x1b[K" +
		"\r" + progressCases[1].tty + "\x1b[K" +
		"\r\x1b[Kcancelling\n" +
		"\r" + progressCases[3].tty + "\x1b[K\n"
	if b.String() != want {
		t.Errorf("tty output\n got %q\nwant %q", b.String(), want)
	}

	b.Reset()
	r.update(running)
	r.abort()
	r.abort() // nothing open: nothing to end
	if want := "\r" + progressCases[1].tty + "\x1b[K\n"; b.String() != want {
		t.Errorf("abort\n got %q\nwant %q", b.String(), want)
	}

	b.Reset()
	r = &progressRenderer{w: &b, tty: true, cols: 30}
	r.update(running)
	if want := "\r" + progressCases[1].tty[:29] + "\x1b[K"; b.String() != want {
		t.Errorf("cut to 30 columns\n got %q\nwant %q", b.String(), want)
	}

	b.Reset()
	r = &progressRenderer{w: &b}
	r.update(running)
	r.note("cancelling")
	r.finish(done)
	want = progressCases[1].plain + "\ncancelling\n" + progressCases[3].plain + "\n"
	if b.String() != want {
		t.Errorf("plain output\n got %q\nwant %q", b.String(), want)
	}
}

func TestFormatters(t *testing.T) {
	bytesCases := []struct {
		n    float64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}, {3 << 50, "3.0 PiB"}, {1 << 62, "4096.0 PiB"}}
	for _, c := range bytesCases {
		if got := formatBytes(c.n); got != c.want {
			t.Errorf("formatBytes(%v) = %q, want %q", c.n, got, c.want)
		}
	}
	durCases := []struct {
		sec  float64
		want string
	}{{0, "0s"}, {59.4, "59s"}, {59.6, "1m00s"}, {3599, "59m59s"}, {3600, "1h00m"}, {99*3600 + 59*60, "99h59m"}, {100 * 3600, ">99h"}, {1e300, ">99h"}, {-1, "?"}}
	for _, c := range durCases {
		if got := formatDuration(c.sec); got != c.want {
			t.Errorf("formatDuration(%v) = %q, want %q", c.sec, got, c.want)
		}
	}
	latCases := []struct {
		sec  float64
		want string
	}{{0.00085, "850us"}, {0.0012, "1.2ms"}, {1.5, "1.50s"}}
	for _, c := range latCases {
		if got := formatLatency(c.sec); got != c.want {
			t.Errorf("formatLatency(%v) = %q, want %q", c.sec, got, c.want)
		}
	}
}
