package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeListener is an in-memory net.Listener: dial hands the server one end
// of a net.Pipe. Blocking on it is durable, so an httptest server on it
// runs inside a synctest bubble, where the CLI's tickers use fake time.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	srv, cli := net.Pipe()
	select {
	case l.conns <- srv:
		return cli, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "127.0.0.1:9470" }

// testNode is an httptest server with the admin handler over a fake
// warmer, reached through a pipe; the returned env's client dials it.
type testNode struct {
	api    *adminAPI
	warmer *fakeWarmer
	srv    *httptest.Server
	client *http.Client
}

// newTestNode must run inside a synctest bubble; it cleans up at the end
// of the bubble's function through the returned stop.
func newTestNode(t *testing.T, cfg adminAPIConfig) (*testNode, func()) {
	f := newFakeWarmer()
	api := newTestAPI(f, cfg)
	l := newPipeListener()
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: apiHandler(api)}}
	srv.Start()
	tr := &http.Transport{DialContext: l.dial}
	n := &testNode{api: api, warmer: f, srv: srv, client: &http.Client{Transport: tr}}
	return n, func() {
		tr.CloseIdleConnections()
		srv.Close()
		api.Close()
	}
}

// runCLI runs the command line in a goroutine against the node and
// returns a channel with its exit code; read out and errb only after it.
func (n *testNode) runCLI(ctx context.Context, args ...string) (<-chan int, *bytes.Buffer, *bytes.Buffer) {
	e, out, errb := testEnv()
	e.httpClient = n.client
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, e) }()
	return code, out, errb
}

func TestCLIWarmFollows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, stop := newTestNode(t, adminAPIConfig{})
		defer stop()
		code, out, errb := n.runCLI(t.Context(), "warm", "--admin", n.srv.URL, "/data/a", "--pin", "--parallelism", "2")
		c := <-n.warmer.calls
		if c.export != "/data" || c.rel != "a" || c.opts != (warmOptions{Pin: true, Parallelism: 2}) {
			t.Errorf("Warm(%q, %q, %+v), want (/data, a, pin, 2): flags after the path count", c.export, c.rel, c.opts)
		}
		// The CLI printed its first line at 0s; it prints the next at 5s.
		time.Sleep(500 * time.Millisecond)
		c.progress(warmProgress{FilesDone: 2, FilesTotal: 8, BytesDone: 5 << 20, BytesTotal: 20 << 20})
		time.Sleep(5 * time.Second)
		c.reply <- warmReply{p: warmProgress{FilesDone: 8, FilesTotal: 8, BytesDone: 20 << 20, BytesTotal: 20 << 20}}
		if got := <-code; got != exitOK {
			t.Fatalf("exit %d\n%s%s", got, out, errb)
		}
		want := "warm 0001020304050607 running: 0/0 files, 0 B/0 B, 0 B/s, ETA ?, 0 errors\n" +
			"warm 0001020304050607 running: 2/8 files, 5.0 MiB/20.0 MiB, 1.0 MiB/s, ETA 15s, 0 errors\n" +
			"warm 0001020304050607 done: 8/8 files, 20.0 MiB/20.0 MiB, 3.6 MiB/s, took 6s, 0 errors\n"
		if out.String() != want {
			t.Errorf("stdout\n got %q\nwant %q", out, want)
		}
	})
}

func TestCLIWarmInterrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, stop := newTestNode(t, adminAPIConfig{})
		defer stop()
		ctx, interrupt := context.WithCancel(t.Context())
		code, out, errb := n.runCLI(ctx, "warm", "--admin", n.srv.URL, "/data")
		c := <-n.warmer.calls
		time.Sleep(2 * time.Second)
		interrupt()
		<-c.ctx.Done() // the CLI's DELETE reached the node
		if got := <-code; got != exitFail {
			t.Errorf("exit %d, want %d", got, exitFail)
		}
		for _, want := range []string{"cancelling warm job 0001020304050607", "warm 0001020304050607 cancelled: 0/0 files"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errb.String(), "job 0001020304050607 was cancelled") {
			t.Errorf("stderr: %s", errb)
		}
		if v, _ := n.api.jobs.view("0001020304050607"); v.State != jobCancelled {
			t.Errorf("job state %s, want cancelled", v.State)
		}
	})
}

func TestCLIWarmOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		reply  *warmReply // nil: the node refuses the request
		code   int
		stderr string
	}{
		{"failed", []string{"/data/a"}, &warmReply{err: errors.New("origin down")}, exitFail, "job 0001020304050607 failed: /data/a: origin down"},
		{"file errors", []string{"/data/a"}, &warmReply{p: warmProgress{FilesDone: 5, Errors: 2}}, exitFail, "could not warm 2 file(s)"},
		{"unknown export", []string{"/data/a", "/nope/x"}, nil, exitFail, "POST /v1/warm: no export holds /nope/x (exports: /data, /data/models, /scratch) (HTTP 400)"},
		{"bad parallelism", []string{"--parallelism", "-3", "/data"}, nil, exitFail, "parallelism -3 is not in 0..1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, stop := newTestNode(t, adminAPIConfig{})
				defer stop()
				code, out, errb := n.runCLI(t.Context(), append([]string{"warm", "--admin", n.srv.URL}, tt.args...)...)
				if tt.reply != nil {
					c := <-n.warmer.calls
					c.reply <- *tt.reply
				}
				if got := <-code; got != tt.code || !strings.Contains(errb.String(), tt.stderr) {
					t.Errorf("exit %d, want %d; stderr lacks %q:\n%s%s", got, tt.code, tt.stderr, out, errb)
				}
			})
		})
	}
}

func TestCLIWarmUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"warm"}, "name at least one /EXPORT/path"},
		{[]string{"warm", "--admin", "ftp://x", "/data"}, `--admin "ftp://x" is not an http URL`},
		{[]string{"warm", "--frob", "/data"}, "flag provided but not defined: -frob"},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		e, out, errb := testEnv()
		if code := run(t.Context(), tt.args, e); code != exitUsage || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", tt.args, code, exitUsage, tt.want, out, errb)
		}
	}
}

// TestCLINodeDown: a node that does not answer gets a hint, not a hang.
func TestCLINodeDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	for _, cmd := range []string{"warm", "status"} {
		e, out, errb := testEnv()
		args := []string{cmd, "--admin", addr}
		if cmd == "warm" {
			args = append(args, "/data")
		}
		if code := run(t.Context(), args, e); code != exitFail || !strings.Contains(errb.String(), "is nascache serving") {
			t.Errorf("%s against a closed port: exit %d\n%s%s", cmd, code, out, errb)
		}
	}
}

func TestAdminBaseURL(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Origins need not exist where the CLI runs.
	exports := "exports:\n  - path: /data\n    origin: file:///not/here\n"
	tests := []struct {
		flag, config string
		want, err    string
	}{
		{"", "", "http://127.0.0.1:9470", ""},
		{"http://10.1.2.3:9000/", "", "http://10.1.2.3:9000", ""},
		{"localhost:9471", "", "http://localhost:9471", ""},
		{"https://node1:9470", write("ignored.yaml", "admin_listen: 1.2.3.4:1\n"), "https://node1:9470", ""},
		{"", write("default.yaml", exports), "http://127.0.0.1:9470", ""},
		{"", write("any.yaml", "admin_listen: 0.0.0.0:9999\n"+exports), "http://127.0.0.1:9999", ""},
		{"", write("v6.yaml", "admin_listen: \"[::1]:9472\"\n"+exports), "http://[::1]:9472", ""},
		{"", write("off.yaml", "admin_listen: \"\"\n"+exports), "", "admin_listen is empty"},
		{"", write("zero.yaml", "admin_listen: 127.0.0.1:0\n"+exports), "", "port 0"},
		{"", write("typo.yaml", "admin_lisen: 127.0.0.1:1\n"), "", "admin_lisen: unknown key"},
		{"", filepath.Join(dir, "missing.yaml"), "", "no such file"},
		{"ftp://x", "", "", "not an http URL"},
		{"http://", "", "", "not an http URL"},
	}
	for _, tt := range tests {
		got, err := adminBaseURL(tt.flag, tt.config)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("adminBaseURL(%q, %q) = %q, %v; want error with %q", tt.flag, tt.config, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("adminBaseURL(%q, %q) = %q, %v; want %q", tt.flag, tt.config, got, err, tt.want)
		}
	}
}

// TestCLIWarmJobLost: a node that forgets the job (it restarted) ends the
// follow with an error, not a hang.
func TestCLIWarmJobLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/warm", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusAccepted, warmStarted{ID: "gone"})
		})
		l := newPipeListener()
		srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
		srv.Start()
		tr := &http.Transport{DialContext: l.dial}
		defer func() {
			tr.CloseIdleConnections()
			srv.Close()
		}()
		e, out, errb := testEnv()
		e.httpClient = &http.Client{Transport: tr}
		code := run(t.Context(), []string{"warm", "--admin", srv.URL, "/data"}, e)
		if code != exitFail || !strings.Contains(errb.String(), "GET /v1/warm/gone: 404 page not found (HTTP 404)") {
			t.Errorf("exit %d\n%s%s", code, out, errb)
		}
	})
}
