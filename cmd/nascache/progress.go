package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progressBarWidth is the number of cells in the terminal progress bar.
const progressBarWidth = 20

// progressRenderer draws a warm job's progress: on a terminal one line
// redrawn in place, otherwise one plain line per update. The caller
// decides how often to update.
type progressRenderer struct {
	w   io.Writer
	tty bool
	// cols is the terminal width; a longer line is cut to fit so that
	// the carriage return redraws it in place. 0: unknown, never cut.
	cols int
	// open is set while a terminal line is drawn without its newline.
	open bool
}

// update shows v, a running job.
func (r *progressRenderer) update(v warmJobView) {
	if !r.tty {
		fmt.Fprintln(r.w, plainLine(v))
		return
	}
	line := ttyLine(v)
	if r.cols > 0 && len(line) > r.cols-1 {
		line = line[:r.cols-1]
	}
	// \r back to column 0, the line, then erase what a longer earlier
	// line left to its right.
	fmt.Fprintf(r.w, "\r%s\x1b[K", line)
	r.open = true
}

// abort ends an open terminal line, so that what is printed next (an
// error) starts on a line of its own.
func (r *progressRenderer) abort() {
	if r.open {
		fmt.Fprintln(r.w)
		r.open = false
	}
}

// note prints msg on a line of its own, under the bar on a terminal.
func (r *progressRenderer) note(msg string) {
	if r.tty {
		fmt.Fprintf(r.w, "\r\x1b[K%s\n", msg)
		r.open = false
		return
	}
	fmt.Fprintln(r.w, msg)
}

// finish shows v, a finished job, and ends the terminal line.
func (r *progressRenderer) finish(v warmJobView) {
	if r.tty {
		r.update(v)
		r.abort()
		return
	}
	fmt.Fprintln(r.w, plainLine(v))
}

// ttyLine is the terminal progress line:
//
//	[#######.............]  35%  1234/3456 files  1.2/3.4 GiB  85.3 MiB/s  ETA 32s
func ttyLine(v warmJobView) string {
	frac, known := fraction(v)
	var b strings.Builder
	filled := int(frac * progressBarWidth)
	b.WriteByte('[')
	b.WriteString(strings.Repeat("#", filled))
	b.WriteString(strings.Repeat(".", progressBarWidth-filled))
	b.WriteByte(']')
	if known {
		fmt.Fprintf(&b, " %3d%%", int(frac*100))
	} else {
		b.WriteString("    ?")
	}
	fmt.Fprintf(&b, "  %d/%d files  %s  %s/s", v.FilesDone, v.FilesTotal, bytePair(v.BytesDone, v.BytesTotal), formatBytes(v.BytesPerSecond))
	switch {
	case v.State != jobRunning:
		fmt.Fprintf(&b, "  %s in %s", v.State, formatDuration(v.ElapsedSeconds))
	case v.ETASeconds != nil:
		fmt.Fprintf(&b, "  ETA %s", formatDuration(*v.ETASeconds))
	}
	if v.Errors > 0 {
		fmt.Fprintf(&b, "  %d error(s)", v.Errors)
	}
	return b.String()
}

// plainLine is the progress line for logs and pipes:
//
//	warm 3f2a9c01d2e4b5a6 running: 1234/3456 files, 1.2 GiB/3.4 GiB, 85.3 MiB/s, ETA 32s, 0 errors
func plainLine(v warmJobView) string {
	var b strings.Builder
	bytes := formatBytes(float64(v.BytesDone))
	if v.BytesTotal > 0 || v.BytesDone == 0 {
		bytes += "/" + formatBytes(float64(v.BytesTotal))
	}
	fmt.Fprintf(&b, "warm %s %s: %d/%d files, %s, %s/s", v.ID, v.State, v.FilesDone, v.FilesTotal, bytes, formatBytes(v.BytesPerSecond))
	switch {
	case v.State != jobRunning:
		fmt.Fprintf(&b, ", took %s", formatDuration(v.ElapsedSeconds))
	case v.ETASeconds != nil:
		fmt.Fprintf(&b, ", ETA %s", formatDuration(*v.ETASeconds))
	default:
		b.WriteString(", ETA ?")
	}
	fmt.Fprintf(&b, ", %d errors", v.Errors)
	if v.Error != "" {
		fmt.Fprintf(&b, ": %s", v.Error)
	}
	return b.String()
}

// fraction is how much of what was found is done: by bytes when byte
// totals are known, else by files. A finished job that is done is whole.
func fraction(v warmJobView) (float64, bool) {
	var f float64
	switch {
	case v.State == jobDone:
		return 1, true
	case v.BytesTotal > 0:
		f = float64(v.BytesDone) / float64(v.BytesTotal)
	case v.FilesTotal > 0:
		f = float64(v.FilesDone) / float64(v.FilesTotal)
	default:
		return 0, false
	}
	return min(max(f, 0), 1), true
}

// bytePair formats done/total in total's unit: "1.2/3.4 GiB"; done
// alone when there is no total.
func bytePair(done, total int64) string {
	if total == 0 && done > 0 {
		return formatBytes(float64(done))
	}
	unit, div := byteUnit(float64(max(done, total)))
	if unit == "B" {
		return fmt.Sprintf("%d/%d B", done, total)
	}
	return fmt.Sprintf("%.1f/%.1f %s", float64(done)/div, float64(total)/div, unit)
}

// formatBytes formats n bytes with a binary unit: "512 B", "85.3 MiB".
func formatBytes(n float64) string {
	unit, div := byteUnit(n)
	if unit == "B" {
		return fmt.Sprintf("%d B", int64(n))
	}
	return fmt.Sprintf("%.1f %s", n/div, unit)
}

// byteUnit picks the binary unit for n: the largest with n >= 1 of it.
func byteUnit(n float64) (string, float64) {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	div := 1.0
	i := 0
	for i < len(units)-1 && n >= div*1024 {
		div *= 1024
		i++
	}
	return units[i], div
}

// formatDuration formats seconds for a person: "45s", "3m07s", "2h05m",
// and ">99h" beyond.
func formatDuration(sec float64) string {
	switch {
	case math.IsNaN(sec) || sec < 0:
		return "?"
	case sec >= 100*3600:
		return ">99h"
	}
	d := time.Duration(math.Round(sec)) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// termCols is the width of the terminal w is open on, 0 if unknown.
func termCols(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
