package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func testEnv() (env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, &out, &errb
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{nil, exitUsage, "usage: nascache"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"version"}, exitOK, "nascache "},
		{[]string{"serve", "--nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"serve", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"check-config", "--config", "/does/not/exist.yaml"}, exitFail, "no such file"},
		{[]string{"demo", "-h"}, exitOK, "-self-check"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			e, out, errb := testEnv()
			if code := run(t.Context(), tt.args, e); code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errb)
			}
			if all := out.String() + errb.String(); !strings.Contains(all, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, all)
			}
		})
	}
}

func TestCheckConfigReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	yaml := "listen: 127.0.0.1:2049\nadmin_listen: 127.0.0.1:2049\ndata_dir: relative\nexports:\n  - path: /a\n    origin: ftp://x/y\n    clients: [10.0.0.0/40]\n    squash: most\n  - path: /a\n    origin: file://" + dir + "\n    colour: red\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	e, out, errb := testEnv()
	if code := run(t.Context(), []string{"check-config", "--config", p}, e); code != exitConfig {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitConfig, out, errb)
	}
	// The unknown key stops decoding; fix it and every validation problem shows.
	if !strings.Contains(errb.String(), "exports[1].colour: unknown key") {
		t.Errorf("unknown key not reported:\n%s", errb)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(yaml, "    colour: red\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	e, out, errb = testEnv()
	if code := run(t.Context(), []string{"check-config", "--config", p}, e); code != exitConfig {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitConfig, out, errb)
	}
	for _, want := range []string{
		"admin_listen: 127.0.0.1:2049 clashes with listen",
		`data_dir: "relative" is not an absolute path`,
		`exports[0].origin: scheme "ftp" not supported (file, nfs)`,
		"exports[0].clients[0]:",
		`exports[0].squash: "most" is not one of none, root, all`,
		`exports[1].path: "/a" is already exported by exports[0]`,
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, errb)
		}
	}
	if err := os.WriteFile(p, []byte("exports:\n  - path: /a\n    origin: file://"+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, out, errb = testEnv()
	if code := run(t.Context(), []string{"check-config", "--config", p}, e); code != exitOK || !strings.Contains(out.String(), ": ok") {
		t.Errorf("valid config: exit %d\n%s%s", code, out, errb)
	}
}

// TestNodeServes wires a real node over a local origin, waits for READY=1
// on a notification socket, checks /healthz and the NFS port, then stops it
// and waits for STOPPING=1.
func TestNodeServes(t *testing.T) {
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	if _, err := makeSampleTree(origin); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Exports: []ExportConfig{{Path: "/demo", Origin: "file://" + origin}},
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(t.Context(), cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "notify")
	notify := listenNotify(t, sock)
	health := "http://" + n.admin.Addr().String() + "/healthz"
	if n.ready.Load() {
		t.Error("ready before Run")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, sock) }()
	if got := recvNotify(t, notify); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	resp, err := http.Get(health)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while serving = %d", resp.StatusCode)
	}
	c, err := net.Dial("tcp", n.nfsAddr().String())
	if err != nil {
		t.Fatalf("NFS port: %v", err)
	}
	c.Close()
	cancel()
	if got := recvNotify(t, notify); got != "STOPPING=1" {
		t.Errorf("second notification %q, want STOPPING=1", got)
	}
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if n.ready.Load() {
		t.Error("still ready after Run returned")
	}
}

func TestMountInstructions(t *testing.T) {
	tests := []struct {
		listen string
		want   []string
	}{
		{"127.0.0.1:20490", []string{
			"sudo mount -t nfs -o vers=3,proto=tcp,port=20490,mountport=20490,mountproto=tcp,nolock 127.0.0.1:/demo /mnt/nascache-demo",
			`nfs-ls "nfs://127.0.0.1/demo?version=3&nfsport=20490&mountport=20490"`,
		}},
		{"0.0.0.0:2049", []string{"nolock 127.0.0.1:/demo ", "nfs://127.0.0.1/demo?"}},
		{"[::]:2049", []string{"nolock [::1]:/demo ", "nfs://[::1]/demo?"}},
	}
	for _, tt := range tests {
		addr, err := net.ResolveTCPAddr("tcp", tt.listen)
		if err != nil {
			t.Fatal(err)
		}
		got := mountInstructions(reachable(addr), demoExport)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: instructions lack %q:\n%s", tt.listen, w, got)
			}
		}
	}
}

// TestDemoSelfCheck runs the whole demo: sample tree, server, and a
// read-back of every byte and attribute through backend/nfs.
func TestDemoSelfCheck(t *testing.T) {
	e, out, errb := testEnv()
	dir := filepath.Join(t.TempDir(), "tree")
	code := run(t.Context(), []string{"demo", "--self-check", "--listen", "127.0.0.1:0", "--dir", dir}, e)
	if code != exitOK {
		t.Fatalf("demo --self-check: exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{"mount -t nfs -o vers=3,proto=tcp,port=", "mountport=", "mountproto=tcp,nolock", "nfs-ls \"nfs://127.0.0.1/demo?version=3&nfsport=", "0 mismatch(es)", "self-check: OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
