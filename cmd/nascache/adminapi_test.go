package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// warmCall is one Warm call the fake warmer received. The test answers it
// on reply; Warm returns early with ctx's error if its ctx ends first.
type warmCall struct {
	ctx      context.Context
	export   string
	rel      string
	opts     warmOptions
	progress func(warmProgress)
	reply    chan warmReply
}

type warmReply struct {
	p   warmProgress
	err error
}

// fakeWarmer hands every Warm call to the test through calls.
type fakeWarmer struct {
	calls chan warmCall
}

func newFakeWarmer() *fakeWarmer { return &fakeWarmer{calls: make(chan warmCall)} }

func (f *fakeWarmer) Warm(ctx context.Context, export, rel string, opts warmOptions, progress func(warmProgress)) (warmProgress, error) {
	c := warmCall{ctx: ctx, export: export, rel: rel, opts: opts, progress: progress, reply: make(chan warmReply)}
	select {
	case f.calls <- c:
	case <-ctx.Done():
		return warmProgress{}, ctx.Err()
	}
	select {
	case r := <-c.reply:
		return r.p, r.err
	case <-ctx.Done():
		return warmProgress{}, ctx.Err()
	}
}

var _ warmer = (*fakeWarmer)(nil)

// testExports are the exports the API tests map paths onto.
var testExports = []ExportConfig{
	{Path: "/data", Origin: "file:///srv/data"},
	{Path: "/data/models", Origin: "nfs://backup:s3cret@nas1/models"},
	{Path: "/scratch", Origin: "nfs://nas2/scratch"},
}

// testJobID is the first job id newTestAPI's fixed random bytes make.
const testJobID = "0001020304050607"

// newTestAPI builds an API over w with fixed job ids; the clock is
// time.Now, which synctest fakes.
func newTestAPI(w warmer, cfg adminAPIConfig) *adminAPI {
	cfg.Warmer = w
	if cfg.Exports == nil {
		cfg.Exports = testExports
	}
	cfg.Version = "nascache test"
	cfg.Started = time.Now()
	if cfg.Rand == nil {
		cfg.Rand = &countingReader{}
	}
	return newAdminAPI(cfg, zerolog.Nop())
}

// apiDo sends one request to h and returns the status and the body.
func apiDo(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Code, rec.Body.String()
}

// getJob fetches and decodes a job's view.
func getJob(t *testing.T, h http.Handler, id string) warmJobView {
	t.Helper()
	code, body := apiDo(t, h, http.MethodGet, "/v1/warm/"+id, "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/warm/%s = %d %s", id, code, body)
	}
	var v warmJobView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func apiHandler(a *adminAPI) http.Handler {
	mux := http.NewServeMux()
	a.register(mux)
	return mux
}

// startJob posts a warm request and returns the job id.
func startJob(t *testing.T, h http.Handler, body string) string {
	t.Helper()
	code, reply := apiDo(t, h, http.MethodPost, "/v1/warm", body)
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/warm %s = %d %s", body, code, reply)
	}
	var st warmStarted
	if err := json.Unmarshal([]byte(reply), &st); err != nil || st.ID == "" {
		t.Fatalf("POST reply %s: %v", reply, err)
	}
	return st.ID
}

func TestWarmJobLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeWarmer()
		a := newTestAPI(f, adminAPIConfig{})
		defer a.Close()
		h := apiHandler(a)
		t0 := time.Now()

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/warm", strings.NewReader(`{"paths": ["/data/a/", "/data/models/x"], "pin": true, "parallelism": 3}`)))
		if rec.Code != http.StatusAccepted || rec.Header().Get("Location") != "/v1/warm/"+testJobID {
			t.Fatalf("POST = %d %s, Location %q", rec.Code, rec.Body, rec.Header().Get("Location"))
		}

		c := <-f.calls
		if c.export != "/data" || c.rel != "a" || c.opts != (warmOptions{Pin: true, Parallelism: 3}) {
			t.Errorf("first Warm(%q, %q, %+v), want (/data, a, pin 3)", c.export, c.rel, c.opts)
		}
		time.Sleep(10 * time.Second)
		c.progress(warmProgress{FilesDone: 1, FilesTotal: 4, BytesDone: 100, BytesTotal: 400})
		v := getJob(t, h, testJobID)
		want := warmJobView{
			ID: testJobID, State: jobRunning, Paths: []string{"/data/a", "/data/models/x"}, Pin: true, Parallelism: 3,
			FilesDone: 1, FilesTotal: 4, BytesDone: 100, BytesTotal: 400,
			ElapsedSeconds: 10, BytesPerSecond: 10, FilesPerSecond: 0.1, StartedAt: t0,
		}
		if v.ETASeconds == nil || *v.ETASeconds != 30 {
			t.Errorf("ETA = %v, want 30s (300 bytes left at 10 B/s)", v.ETASeconds)
		}
		v.ETASeconds = nil
		if !jobViewsEqual(v, want) {
			t.Errorf("running view\n got %+v\nwant %+v", v, want)
		}

		c.reply <- warmReply{p: warmProgress{FilesDone: 4, FilesTotal: 4, BytesDone: 400, BytesTotal: 400}}
		c = <-f.calls
		if c.export != "/data/models" || c.rel != "x" {
			t.Errorf("second Warm(%q, %q), want the longest export /data/models, x", c.export, c.rel)
		}
		c.progress(warmProgress{FilesDone: 1, BytesDone: 7})
		if v := getJob(t, h, testJobID); v.PathsDone != 1 || v.FilesDone != 5 || v.BytesDone != 407 {
			t.Errorf("after first path: %+v, want paths_done 1, 5 files, 407 bytes", v)
		}
		time.Sleep(10 * time.Second)
		c.reply <- warmReply{p: warmProgress{FilesDone: 2, FilesTotal: 2, BytesDone: 50, BytesTotal: 50, Errors: 1}}
		synctest.Wait()                         // the job goroutine records the end
		c.progress(warmProgress{FilesDone: 99}) // late: must not count

		v = getJob(t, h, testJobID)
		if v.State != jobDone || v.PathsDone != 2 || v.FilesDone != 6 || v.BytesDone != 450 || v.Errors != 1 ||
			v.ETASeconds != nil || v.FinishedAt == nil || !v.FinishedAt.Equal(t0.Add(20*time.Second)) || v.ElapsedSeconds != 20 {
			t.Errorf("finished view %+v", v)
		}
		time.Sleep(time.Hour)
		if v := getJob(t, h, testJobID); v.ElapsedSeconds != 20 {
			t.Errorf("elapsed of a finished job grows: %v", v.ElapsedSeconds)
		}
		code, body := apiDo(t, h, http.MethodGet, "/v1/warm", "")
		var list []warmJobView
		if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].ID != testJobID {
			t.Errorf("GET /v1/warm = %d %s", code, body)
		}
	})
}

// jobViewsEqual compares views, times with Equal.
func jobViewsEqual(a, b warmJobView) bool {
	if !a.StartedAt.Equal(b.StartedAt) || (a.FinishedAt == nil) != (b.FinishedAt == nil) ||
		(a.FinishedAt != nil && !a.FinishedAt.Equal(*b.FinishedAt)) {
		return false
	}
	a.StartedAt, b.StartedAt, a.FinishedAt, b.FinishedAt = time.Time{}, time.Time{}, nil, nil
	return reflect.DeepEqual(a, b)
}

func TestWarmJobFailsAndCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeWarmer()
		a := newTestAPI(f, adminAPIConfig{})
		defer a.Close()
		h := apiHandler(a)

		failed := startJob(t, h, `{"paths": ["/scratch", "/data"]}`)
		c := <-f.calls
		if c.export != "/scratch" || c.rel != "." {
			t.Errorf("Warm(%q, %q), want the export root (/scratch, .)", c.export, c.rel)
		}
		c.reply <- warmReply{p: warmProgress{FilesDone: 3}, err: errors.New("origin down")}
		synctest.Wait()
		v := getJob(t, h, failed)
		if v.State != jobFailed || v.Error != "/scratch: origin down" || v.PathsDone != 1 || v.FilesDone != 3 {
			t.Errorf("failed job: %+v", v)
		}

		cancelled := startJob(t, h, `{"paths": ["/data/big"]}`)
		c = <-f.calls
		code, body := apiDo(t, h, http.MethodDelete, "/v1/warm/"+cancelled, "")
		if code != http.StatusAccepted {
			t.Errorf("DELETE running job = %d %s, want 202", code, body)
		}
		<-c.ctx.Done()
		synctest.Wait()
		if v := getJob(t, h, cancelled); v.State != jobCancelled || v.FinishedAt == nil {
			t.Errorf("cancelled job: %+v", v)
		}
		if code, body := apiDo(t, h, http.MethodDelete, "/v1/warm/"+cancelled, ""); code != http.StatusOK || !strings.Contains(body, `"cancelled"`) {
			t.Errorf("DELETE finished job = %d %s, want 200 cancelled", code, body)
		}
		if code, _ := apiDo(t, h, http.MethodDelete, "/v1/warm/nope", ""); code != http.StatusNotFound {
			t.Errorf("DELETE unknown job = %d, want 404", code)
		}
		if code, body := apiDo(t, h, http.MethodGet, "/v1/warm/nope", ""); code != http.StatusNotFound || !strings.Contains(body, `no warm job \"nope\"`) {
			t.Errorf("GET unknown job = %d %s, want 404", code, body)
		}
	})
}

func TestWarmBadRequests(t *testing.T) {
	tests := []struct {
		name, body string
		exports    []ExportConfig
		code       int
		want       string
	}{
		{"not json", `{"paths": [`, nil, 400, "body is not a warm request"},
		{"unknown field", `{"paths": ["/data"], "pinned": true}`, nil, 400, `unknown field \"pinned\"`},
		{"two values", `{"paths": ["/data"]} {}`, nil, 400, "more than one JSON value"},
		{"no paths", `{"paths": []}`, nil, 400, "paths is empty"},
		{"relative", `{"paths": ["data/x"]}`, nil, 400, `path \"data/x\" is not absolute`},
		{"dot dot", `{"paths": ["/data/../etc"]}`, nil, 400, "holds a .. element"},
		{"unknown export", `{"paths": ["/data/ok", "/other/x"]}`, nil, 400, "no export holds /other/x (exports: /data, /data/models, /scratch)"},
		{"prefix is not an element", `{"paths": ["/database"]}`, nil, 400, "no export holds /database"},
		{"no exports", `{"paths": ["/x"]}`, []ExportConfig{}, 400, "(exports: none)"},
		{"negative parallelism", `{"paths": ["/data"], "parallelism": -1}`, nil, 400, "parallelism -1 is not in 0..1024"},
		{"huge parallelism", `{"paths": ["/data"], "parallelism": 5000}`, nil, 400, "parallelism 5000"},
		{"too many paths", `{"paths": [` + strings.Repeat(`"/data",`, maxWarmPaths) + `"/data"]}`, nil, 400, "1001 paths, at most 1000"},
		{"too big", `{"paths": ["/data` + strings.Repeat("x", maxWarmBodyBytes) + `"]}`, nil, 413, "request body too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAPI(newFakeWarmer(), adminAPIConfig{Exports: tt.exports})
			defer a.Close()
			code, body := apiDo(t, apiHandler(a), http.MethodPost, "/v1/warm", tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("POST = %d %s, want %d containing %q", code, body, tt.code, tt.want)
			}
			if a.jobs.running() != 0 {
				t.Error("a refused request started a job")
			}
		})
	}
	a := newAdminAPI(adminAPIConfig{Exports: testExports}, zerolog.Nop())
	if code, body := apiDo(t, apiHandler(a), http.MethodPost, "/v1/warm", `{"paths": ["/data"]}`); code != http.StatusNotImplemented {
		t.Errorf("POST without a warmer = %d %s, want 501", code, body)
	}
}

func TestResolve(t *testing.T) {
	root := []ExportConfig{{Path: "/", Origin: "file:///srv"}, {Path: "/data", Origin: "file:///srv/d"}}
	tests := []struct {
		exports     []ExportConfig
		path        string
		export, rel string
	}{
		{testExports, "/data", "/data", "."},
		{testExports, "/data/", "/data", "."},
		{testExports, "/data//a/./b", "/data", "a/b"},
		{testExports, "/data/modelsX/y", "/data", "modelsX/y"},
		{testExports, "/data/models", "/data/models", "."},
		{testExports, "/data/models/m/w.bin", "/data/models", "m/w.bin"},
		{root, "/", "/", "."},
		{root, "/etc/x", "/", "etc/x"},
		{root, "/data/x", "/data", "x"},
	}
	for _, tt := range tests {
		a := newAdminAPI(adminAPIConfig{Exports: tt.exports}, zerolog.Nop())
		got, err := a.resolve(tt.path)
		if err != nil || got.export != tt.export || got.rel != tt.rel {
			t.Errorf("resolve(%q) = %+v, %v; want (%s, %s)", tt.path, got, err, tt.export, tt.rel)
		}
	}
}

func TestWarmJobTableBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeWarmer()
		a := newTestAPI(f, adminAPIConfig{MaxJobs: 3, MaxRunning: 2})
		defer a.Close()
		h := apiHandler(a)

		first := startJob(t, h, `{"paths": ["/data/1"]}`)
		c1 := <-f.calls
		second := startJob(t, h, `{"paths": ["/data/2"]}`)
		c2 := <-f.calls
		if code, body := apiDo(t, h, http.MethodPost, "/v1/warm", `{"paths": ["/data/3"]}`); code != http.StatusTooManyRequests || !strings.Contains(body, "2 warm job(s) already running (at most 2)") {
			t.Errorf("third running job = %d %s, want 429", code, body)
		}
		c1.reply <- warmReply{}
		synctest.Wait()
		third := startJob(t, h, `{"paths": ["/data/3"]}`)
		c3 := <-f.calls
		// The table (3) is full: first (finished) is the one to go.
		c2.reply <- warmReply{}
		synctest.Wait()
		fourth := startJob(t, h, `{"paths": ["/data/4"]}`)
		c4 := <-f.calls
		if code, _ := apiDo(t, h, http.MethodGet, "/v1/warm/"+first, ""); code != http.StatusNotFound {
			t.Errorf("oldest finished job still kept: GET = %d", code)
		}
		for _, id := range []string{second, third, fourth} {
			getJob(t, h, id)
		}
		if code, _ := apiDo(t, h, http.MethodPost, "/v1/warm", `{"paths": ["/data/5"]}`); code != http.StatusTooManyRequests {
			t.Errorf("fifth job with two running = %d, want 429", code)
		}
		c3.reply <- warmReply{}
		c4.reply <- warmReply{}
	})
	// A table full of running jobs refuses more even below MaxRunning.
	synctest.Test(t, func(t *testing.T) {
		f := newFakeWarmer()
		a := newTestAPI(f, adminAPIConfig{MaxJobs: 2, MaxRunning: 3})
		defer a.Close()
		h := apiHandler(a)
		startJob(t, h, `{"paths": ["/data/1"]}`)
		c1 := <-f.calls
		startJob(t, h, `{"paths": ["/data/2"]}`)
		c2 := <-f.calls
		if code, body := apiDo(t, h, http.MethodPost, "/v1/warm", `{"paths": ["/data/3"]}`); code != http.StatusTooManyRequests || !strings.Contains(body, "the job table holds 2 running jobs") {
			t.Errorf("job into a table of running jobs = %d %s, want 429", code, body)
		}
		c1.reply <- warmReply{}
		c2.reply <- warmReply{}
	})
}

// countingReader yields 0, 1, 2, ... one byte after the other, so that
// every 8-byte id differs.
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// TestAdminAPICloseStopsJobs: Close cancels running jobs, waits for them
// and refuses new ones.
func TestAdminAPICloseStopsJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeWarmer()
		a := newTestAPI(f, adminAPIConfig{})
		h := apiHandler(a)
		id := startJob(t, h, `{"paths": ["/data"]}`)
		<-f.calls
		a.Close() // returns only once the job goroutine has
		if v := getJob(t, h, id); v.State != jobCancelled {
			t.Errorf("job after Close: %s, want cancelled", v.State)
		}
		if code, body := apiDo(t, h, http.MethodPost, "/v1/warm", `{"paths": ["/data"]}`); code != http.StatusServiceUnavailable {
			t.Errorf("POST after Close = %d %s, want 503", code, body)
		}
	})
}

func TestStatusHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lat := 0.0012
		stats := nodeStats{
			Cache: &cacheStatus{CachedBytes: 3 << 30, CapacityBytes: 200 << 30, Hits: 3, Misses: 1, OriginLatencySeconds: &lat},
			Exports: map[string]exportHealth{
				"/data":        {Up: true, OriginLatencySeconds: &lat},
				"/data/models": {Up: false},
			},
		}
		f := newFakeWarmer()
		a := newTestAPI(f, adminAPIConfig{Stats: func() nodeStats { return stats }})
		defer a.Close()
		h := apiHandler(a)
		startJob(t, h, `{"paths": ["/data"]}`)
		c := <-f.calls
		time.Sleep(90 * time.Minute)

		code, body := apiDo(t, h, http.MethodGet, "/v1/status", "")
		var v statusView
		if code != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("GET /v1/status = %d %s", code, body)
		}
		if v.Version != "nascache test" || v.UptimeSeconds != 5400 || v.WarmJobsRunning != 1 {
			t.Errorf("status header: %+v", v)
		}
		if v.Cache == nil || v.Cache.HitRatio == nil || *v.Cache.HitRatio != 0.75 || v.Cache.CachedBytes != 3<<30 {
			t.Errorf("cache: %+v", v.Cache)
		}
		want := []exportStatus{
			{Path: "/data", Origin: "file:///srv/data", State: "up", OriginLatencySeconds: &lat},
			{Path: "/data/models", Origin: "nfs://backup:xxxxx@nas1/models", State: "down"},
			{Path: "/scratch", Origin: "nfs://nas2/scratch", State: "unknown"},
		}
		if len(v.Exports) != len(want) {
			t.Fatalf("exports: %+v", v.Exports)
		}
		for i, w := range want {
			g := v.Exports[i]
			if g.Path != w.Path || g.Origin != w.Origin || g.State != w.State || (g.OriginLatencySeconds == nil) != (w.OriginLatencySeconds == nil) {
				t.Errorf("exports[%d] = %+v, want %+v", i, g, w)
			}
		}
		if strings.Contains(body, "s3cret") {
			t.Error("status shows an origin password")
		}
		c.reply <- warmReply{}
	})

	a := newAdminAPI(adminAPIConfig{Exports: testExports[:1], Version: "v"}, zerolog.Nop())
	code, body := apiDo(t, apiHandler(a), http.MethodGet, "/v1/status", "")
	if code != http.StatusOK || !strings.Contains(body, `"cache": null`) || !strings.Contains(body, `"state": "unknown"`) {
		t.Errorf("status without stats = %d %s", code, body)
	}
}

// FuzzResolve: a client path maps inside its export or is refused; it
// never maps outside (no .., no leading /) and never panics.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"/data", "/data/models/x", "/database", "/data/../etc", "//data//a/", "/", "", "/scratch/\x00", "/data/./a/.."} {
		f.Add(s)
	}
	a := newAdminAPI(adminAPIConfig{Exports: testExports}, zerolog.Nop())
	f.Fuzz(func(t *testing.T, p string) {
		tg, err := a.resolve(p)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("resolve(%q) error %v is not a bad request", p, err)
			}
			return
		}
		if tg.rel == "" || strings.HasPrefix(tg.rel, "/") || slices.Contains(strings.Split(tg.rel, "/"), "..") {
			t.Fatalf("resolve(%q) rel %q escapes or is not relative", p, tg.rel)
		}
		joined := path.Join(tg.export, tg.rel)
		if joined != tg.clientPath || joined != path.Clean(p) {
			t.Fatalf("resolve(%q) = %+v: export+rel %q differs from the cleaned path", p, tg, joined)
		}
	})
}
