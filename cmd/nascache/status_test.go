package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/cachefs"
)

func TestCLIStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lat, slow := 0.0012, 0.35
		n, stop := newTestNode(t, adminAPIConfig{Stats: func() nodeStats {
			return nodeStats{
				Cache: &cacheStatus{CachedBytes: 3 << 30, CapacityBytes: 200 << 30, PinnedBytes: 1 << 30, Evictions: 7, Hits: 3, Misses: 1,
					CacheBytesServed: 3 << 29, OriginBytesServed: 1 << 29, OriginLatencySeconds: &lat},
				Exports: map[string]exportHealth{
					"/data":        {Up: true, Consistency: "immutable", OriginLatencySeconds: &lat},
					"/data/models": {Up: false, OriginLatencySeconds: &slow},
				},
			}
		}})
		defer stop()
		time.Sleep(2*time.Hour + 5*time.Minute)

		code, out, errb := n.runCLI(t.Context(), "status", "--admin", n.srv.URL)
		if got := <-code; got != exitOK {
			t.Fatalf("exit %d\n%s%s", got, out, errb)
		}
		want := `nascache test, up 2h05m
cache           3.0 GiB of 200.0 GiB (1.5%), 1.0 GiB pinned
hit ratio       75.0% (3 hits, 1 misses)
served          1.5 GiB from cache, 512.0 MiB from origin
evictions       7
origin latency  1.2ms per chunk fetch
warm jobs       0 running
exports:
  PATH          ORIGIN                          CONSISTENCY  STATE    LATENCY
  /data         file:///srv/data                immutable    up       1.2ms
  /data/models  nfs://backup:xxxxx@nas1/models  -            down     350.0ms
  /scratch      nfs://nas2/scratch              -            unknown  -
`
		if out.String() != want {
			t.Errorf("status\n got:\n%s\nwant:\n%s", out, want)
		}

		code, out, errb = n.runCLI(t.Context(), "status", "--json", "--admin", n.srv.URL)
		if got := <-code; got != exitOK {
			t.Fatalf("--json: exit %d\n%s%s", got, out, errb)
		}
		var v statusView
		if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.UptimeSeconds != 7500 || v.Cache == nil || len(v.Exports) != 3 {
			t.Errorf("--json printed %s (%v)", out, err)
		}
	})
}

func TestRenderStatusWithoutCache(t *testing.T) {
	var b strings.Builder
	v := statusView{Version: "nascache v1", UptimeSeconds: 42, WarmJobsRunning: 2,
		Exports: []exportStatus{{Path: "/d", Origin: "file:///x", State: exportUnknown}}}
	if err := renderStatus(&b, v); err != nil {
		t.Fatal(err)
	}
	want := `nascache v1, up 42s
cache      none (no data cache on this node: cache_size is 0)
warm jobs  2 running
exports:
  PATH  ORIGIN     CONSISTENCY  STATE    LATENCY
  /d    file:///x  -            unknown  -
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	v.Cache = &cacheStatus{CapacityBytes: 1 << 30}
	if err := renderStatus(&b, v); err != nil || !strings.Contains(b.String(), "hit ratio       - (no reads yet)") || !strings.Contains(b.String(), "0 B of 1.0 GiB (0.0%)") {
		t.Errorf("empty cache:\n%s", b.String())
	}
}

// fakeStats is a file system's figures.
type fakeStats cachefs.Stats

func (f fakeStats) Stats() cachefs.Stats { return cachefs.Stats(f) }

// upOrigin is an origin that reports whether it is up; only Up is called.
type upOrigin struct {
	backend.Origin
	up bool
}

func (o upOrigin) Up() bool { return o.up }

func TestStatsSource(t *testing.T) {
	exports := []ExportConfig{{Path: "/a"}, {Path: "/b"}, {Path: "/c"}}
	origins := []backend.Origin{upOrigin{up: true}, upOrigin{up: false}, nil} // nil: cannot tell
	st := fakeStats{
		DataCache: true, CapacityBytes: 100, CachedBytes: 40, PinnedBytes: 10, Evictions: 2,
		ChunkHits: 9, ChunkMisses: 1, CacheBytesServed: 900, OriginBytesServed: 100,
		OriginFetches: 4, OriginReadAvg: 3 * time.Millisecond,
		Exports: []cachefs.ExportStats{{Path: "/a", Consistency: "immutable"}, {Path: "/b", Consistency: "ttl:2s"}},
	}
	got := statsSource(st, exports, origins)()
	lat := 0.003
	want := nodeStats{
		Cache: &cacheStatus{CachedBytes: 40, CapacityBytes: 100, PinnedBytes: 10, Evictions: 2, Hits: 9, Misses: 1,
			CacheBytesServed: 900, OriginBytesServed: 100, OriginLatencySeconds: &lat},
		Exports: map[string]exportHealth{
			"/a": {Up: true, Consistency: "immutable"},
			"/b": {Up: false, Consistency: "ttl:2s"},
			"/c": {Up: true},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statsSource\n got %+v %+v\nwant %+v %+v", got, got.Cache, want, want.Cache)
	}
	st.DataCache, st.OriginFetches = false, 0
	if got := statsSource(st, exports, origins)(); got.Cache != nil {
		t.Errorf("no data cache: Cache = %+v, want nil", got.Cache)
	}
}
