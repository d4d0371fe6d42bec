package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
)

// cmdStatus shows a running node's state: cache fill, hit ratio, origin
// latency and per-export state; --json prints the API's reply as it is.
func cmdStatus(ctx context.Context, args []string, e env) error {
	fs := newFlags("status", e)
	admin := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print the node's JSON reply (GET /v1/status)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := admin.client(e)
	if err != nil {
		return err
	}
	var v statusView
	raw, err := c.call(ctx, http.MethodGet, "/v1/status", nil, &v)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := e.stdout.Write(raw)
		return err
	}
	return renderStatus(e.stdout, v)
}

// renderStatus writes v for a person.
func renderStatus(w io.Writer, v statusView) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, up %s\n", v.Version, formatDuration(v.UptimeSeconds))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if c := v.Cache; c != nil {
		fill := ""
		if c.CapacityBytes > 0 {
			fill = fmt.Sprintf(" (%.1f%%)", 100*float64(c.CachedBytes)/float64(c.CapacityBytes))
		}
		fmt.Fprintf(tw, "cache\t%s of %s%s, %s pinned\n", formatBytes(float64(c.CachedBytes)), formatBytes(float64(c.CapacityBytes)), fill, formatBytes(float64(c.PinnedBytes)))
		if c.EffectiveCapacityBytes > 0 && c.EffectiveCapacityBytes < c.CapacityBytes {
			fmt.Fprintf(tw, "disk short\tthe cache's disk has room for %s only (%d writes refused): cache_size is larger than the disk\n",
				formatBytes(float64(c.EffectiveCapacityBytes)), c.DiskFullWrites)
		}
		if c.HitRatio != nil {
			fmt.Fprintf(tw, "hit ratio\t%.1f%% (%d hits, %d misses)\n", 100**c.HitRatio, c.Hits, c.Misses)
		} else {
			fmt.Fprintf(tw, "hit ratio\t- (no reads yet)\n")
		}
		fmt.Fprintf(tw, "served\t%s from cache, %s from origin\n", formatBytes(float64(c.CacheBytesServed)), formatBytes(float64(c.OriginBytesServed)))
		fmt.Fprintf(tw, "evictions\t%d\n", c.Evictions)
		if c.CorruptChunks > 0 {
			fmt.Fprintf(tw, "corrupt chunks\t%d (dropped and fetched again)\n", c.CorruptChunks)
		}
		lat := "- (no origin reads yet)"
		if c.OriginLatencySeconds != nil {
			lat = formatLatency(*c.OriginLatencySeconds) + " per chunk fetch"
		}
		fmt.Fprintf(tw, "origin latency\t%s\n", lat)
	} else {
		fmt.Fprintf(tw, "cache\tnone (no data cache on this node: cache_size is 0)\n")
	}
	fmt.Fprintf(tw, "warm jobs\t%d running\n", v.WarmJobsRunning)
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("exports:\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  PATH\tORIGIN\tCONSISTENCY\tSTATE\tLATENCY\n")
	for _, x := range v.Exports {
		lat, mode := "-", "-"
		if x.OriginLatencySeconds != nil {
			lat = formatLatency(*x.OriginLatencySeconds)
		}
		if x.Consistency != "" {
			mode = x.Consistency
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", x.Path, x.Origin, mode, x.State, lat)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatLatency formats seconds as "850us", "1.2ms" or "1.50s".
func formatLatency(sec float64) string {
	switch {
	case sec < 0:
		return "?"
	case sec < 1e-3:
		return fmt.Sprintf("%.0fus", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	default:
		return fmt.Sprintf("%.2fs", sec)
	}
}
