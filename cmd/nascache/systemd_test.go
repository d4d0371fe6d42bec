package main

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	unitFile    = "../../systemd/nascache.service"
	exampleFile = "../../systemd/nascache.yaml"
)

// needTool returns the path of a tool, skipping the test loudly when it is
// missing, or failing it when CI=true (the test command installs it).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found and CI=true: scripts/test-all.sh installs it", name)
		}
		t.Skipf("SKIP: %s not found (install it or run scripts/test-all.sh)", name)
	}
	return p
}

// TestSystemdUnitVerifies runs systemd-analyze verify on a copy of the unit
// whose ExecStart points at a freshly built nascache binary. Any warning
// fails the test: systemd ignores a directive it cannot parse and goes on.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	goTool := needTool(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "nascache")
	build := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify", "ExecStart=/usr/local/bin/nascache serve --config /etc/nascache/nascache.yaml",
		"Restart=on-failure", "LimitNOFILE=1048576", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"StateDirectory=nascache", "CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FSETID CAP_MKNOD CAP_NET_BIND_SERVICE",
	} {
		if !bytes.Contains(unit, []byte("\n"+want+"\n")) {
			t.Errorf("unit lacks %q", want)
		}
	}
	cfg := filepath.Join(dir, "nascache.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	unit = bytes.ReplaceAll(unit, []byte("/usr/local/bin/nascache"), []byte(bin))
	unit = bytes.ReplaceAll(unit, []byte("/etc/nascache/nascache.yaml"), []byte(cfg))
	copyPath := filepath.Join(dir, "nascache.service")
	if err := os.WriteFile(copyPath, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), analyze, "verify", "--man=no", copyPath)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestExampleConfigValidates runs the example config through the real
// decoder and validator. Its file:// origins do not exist on a test
// machine: those, and only those, may fail until they point at real
// directories.
func TestExampleConfigValidates(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeConfig(data)
	if err != nil {
		t.Fatalf("decode %s: %v", exampleFile, err)
	}
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatal(err)
		}
		for _, p := range ce.Problems {
			if !strings.HasSuffix(p.Key, ".origin") || !strings.Contains(p.Msg, "no such file or directory") {
				t.Errorf("%s: %s", exampleFile, p)
			}
		}
	}
	for i := range cfg.Exports {
		if u, err := url.Parse(cfg.Exports[i].Origin); err == nil && u.Scheme == "file" {
			cfg.Exports[i].Origin = "file://" + t.TempDir()
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s with existing origin directories: %v", exampleFile, err)
	}
}
