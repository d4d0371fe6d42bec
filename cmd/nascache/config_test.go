package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// problemKeys returns the keys of a *ConfigError, failing the test if err
// is anything else.
func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	keys := make([]string, 0, len(ce.Problems))
	for _, p := range ce.Problems {
		keys = append(keys, p.Key)
	}
	return keys
}

func TestDecodeConfigDefaults(t *testing.T) {
	origin := t.TempDir()
	cfg, err := decodeConfig([]byte("exports:\n  - path: /data\n    origin: file://" + origin + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := cfg.Exports[0]
	want := Config{Listen: "127.0.0.1:2049", AdminListen: "127.0.0.1:9470", DataDir: "/var/lib/nascache", LogLevel: "info", LogFormat: "auto"}
	if got := *cfg; got.Listen != want.Listen || got.AdminListen != want.AdminListen || got.DataDir != want.DataDir ||
		got.LogLevel != want.LogLevel || got.LogFormat != want.LogFormat || got.PortmapListen != "" {
		t.Errorf("top-level defaults not applied: %+v", cfg)
	}
	off, err := decodeConfig([]byte("admin_listen: \"\"\nexports: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if off.AdminListen != "" {
		t.Errorf("admin_listen written as empty = %q, want off", off.AdminListen)
	}
	if e.Squash != "none" || *e.AnonUID != 65534 || *e.AnonGID != 65534 || e.ReadOnly {
		t.Errorf("export defaults not applied: %+v uid=%d gid=%d", e, *e.AnonUID, *e.AnonGID)
	}
	all := e.clientPrefixes()
	for _, a := range []string{"10.1.2.3", "::1", "192.168.0.1"} {
		if !slices.ContainsFunc(all, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(a)) }) {
			t.Errorf("default clients do not allow %s", a)
		}
	}
}

func TestDecodeConfigExplicitValues(t *testing.T) {
	origin := t.TempDir()
	cfg, err := decodeConfig([]byte(`
listen: 0.0.0.0:2049
portmap_listen: 0.0.0.0:111
admin_listen: 127.0.0.1:9470
data_dir: /var/lib/nascache
log_level: debug
log_format: json
exports:
  - path: /data
    origin: file://` + origin + `
    clients: [10.0.0.0/8, 192.168.1.7, "fd00::/8"]
    read_only: true
    squash: all
    anon_uid: 0
    anon_gid: 100
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := cfg.Exports[0]
	if *e.AnonUID != 0 || *e.AnonGID != 100 || !e.ReadOnly || e.Squash != "all" {
		t.Errorf("explicit values lost: %+v", e)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("fd00::/8")}
	if got := e.clientPrefixes(); !slices.Equal(got, want) {
		t.Errorf("clients = %v, want %v", got, want)
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // keys at fault, in order; "" for a problem without a key
	}{
		{
			name: "unknown keys everywhere are all reported with their path",
			yaml: "listne: 1.2.3.4:5\nexports:\n  - path: /a\n    orign: file:///x\n  - path: /b\n    squash: none\n    readonly: true\n",
			want: []string{"listne", "exports[0].orign", "exports[1].readonly"},
		},
		{
			name: "type errors are reported together with unknown keys",
			yaml: "bogus: 1\nexports:\n  - path: /a\n    anon_uid: -1\n    read_only: maybe\n",
			want: []string{"bogus", "", ""},
		},
		{
			name: "not YAML",
			yaml: "exports: [",
			want: []string{""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeConfig([]byte(tt.yaml))
			if got := problemKeys(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("keys = %q, want %q\n%v", got, tt.want, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	origin := t.TempDir()
	file := filepath.Join(origin, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	good := func() *Config {
		c := &Config{
			Listen: "127.0.0.1:2049", AdminListen: "127.0.0.1:9470", DataDir: "/var/lib/nascache",
			Exports: []ExportConfig{{Path: "/data", Origin: "file://" + origin, Clients: []string{"127.0.0.0/8"}}},
		}
		c.setDefaults()
		return c
	}
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string // keys at fault, in order
		msg    string   // a substring of the first problem's message
	}{
		{name: "good", modify: func(*Config) {}},
		{name: "nfs origin with ports", modify: func(c *Config) { c.Exports[0].Origin = "nfs://nas1:2049/export/a?mountport=20048" }},
		{name: "nfs origin without port", modify: func(c *Config) { c.Exports[0].Origin = "nfs://10.0.0.5/" }},
		{name: "ephemeral ports never clash", modify: func(c *Config) { c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0" }},
		{name: "same port on different hosts", modify: func(c *Config) { c.Listen, c.AdminListen = "127.0.0.1:2049", "127.0.0.2:2049" }},
		{name: "admin off", modify: func(c *Config) { c.AdminListen = "" }},
		{
			name: "unsupported scheme",
			modify: func(c *Config) {
				c.Exports = append(c.Exports, ExportConfig{Path: "/b", Origin: "ftp://x/y", Squash: "none"})
			},
			want: []string{"exports[1].origin"},
			msg:  `scheme "ftp" not supported (file, nfs)`,
		},
		{
			name: "every problem at once",
			modify: func(c *Config) {
				c.Listen = "nohost"
				c.PortmapListen = "0.0.0.0:99999"
				c.DataDir = "relative/dir"
				c.LogLevel = "loud"
				c.LogFormat = "xml"
				c.Exports = []ExportConfig{
					{Path: "data", Origin: "file:///does/not/exist", Clients: []string{"10.0.0.0/33", "10.0.0.1/8", "host"}, Squash: "some"},
					{Path: "/x/../y", Origin: "file://" + file, Squash: "none"},
					{Path: "/d", Origin: "", Squash: "none"},
					{Path: "/d", Origin: "nfs:///export", Squash: "none"},
					{Path: "/e", Origin: "nfs://nas/export?mountport=x", Squash: "none"},
					{Path: "/f", Origin: "nfs://nas:http/export", Squash: "none"},
					{Path: "/g", Origin: "file:relative", Squash: "none"},
					{Path: "/h", Origin: "/srv/data", Squash: "none"},
					{Path: "/i", Origin: "nfs://nas/e?bogus=1", Squash: "none"},
				}
			},
			want: []string{
				"listen", "portmap_listen", "data_dir", "log_level", "log_format",
				"exports[0].path", "exports[0].origin", "exports[0].clients[0]", "exports[0].clients[1]", "exports[0].clients[2]", "exports[0].squash",
				"exports[1].path", "exports[1].origin",
				"exports[2].origin",
				"exports[3].path", "exports[3].origin",
				"exports[4].origin",
				"exports[5].origin",
				"exports[6].origin",
				"exports[7].origin",
				"exports[8].origin",
			},
			msg: `"nohost" is not host:port`,
		},
		{
			name:   "listen clashes",
			modify: func(c *Config) { c.Listen, c.PortmapListen, c.AdminListen = "0.0.0.0:2049", "127.0.0.1:2049", ":2049" },
			want:   []string{"portmap_listen", "admin_listen", "admin_listen"},
			msg:    "clashes with listen",
		},
		{
			name:   "no exports",
			modify: func(c *Config) { c.Exports = nil },
			want:   []string{"exports"},
		},
		{
			name:   "empty listen and data_dir",
			modify: func(c *Config) { c.Listen, c.DataDir = "", "" },
			want:   []string{"listen", "data_dir"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.modify(c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if got := problemKeys(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("keys = %q\nwant   %q\n%v", got, tt.want, err)
			}
			var ce *ConfigError
			errors.As(err, &ce)
			if tt.msg != "" && !strings.Contains(ce.Problems[0].Msg, tt.msg) {
				t.Errorf("first problem %q does not contain %q", ce.Problems[0], tt.msg)
			}
		})
	}
}

func TestLoadConfigNamesFileAndReportsAll(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("data_dir: rel\nexports:\n  - path: /a\n    origin: ftp://x/\n    squash: everyone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(p)
	if got := problemKeys(t, err); !slices.Equal(got, []string{"data_dir", "exports[0].origin", "exports[0].squash"}) {
		t.Errorf("keys = %q\n%v", got, err)
	}
	msg := err.Error()
	for _, s := range []string{p, "3 problem(s)", `exports[0].origin: scheme "ftp" not supported (file, nfs)`, `data_dir: "rel" is not an absolute path`} {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not contain %q:\n%s", s, msg)
		}
	}
	if _, err := loadConfig(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

// FuzzDecodeConfig checks that no input makes the decoder or the validator
// panic, and that a decoded config always has its defaults.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte("listen: 1.2.3.4:5\nexports:\n  - path: /a\n    origin: nfs://h/e\n"))
	f.Add([]byte("exports: [{path: /a, clients: [1.2.3.0/24]}]"))
	f.Add([]byte("- 1\n- 2"))
	f.Add([]byte("exports: {path: /a}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeConfig(data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("decode error %v is not a non-empty *ConfigError", err)
			}
			return
		}
		for _, e := range cfg.Exports {
			if e.AnonUID == nil || e.AnonGID == nil || e.Squash == "" {
				t.Fatalf("export defaults missing: %+v", e)
			}
		}
		if err := cfg.Validate(); err == nil {
			if cfg.Listen == "" || cfg.LogLevel == "" || cfg.LogFormat == "" || !filepath.IsAbs(cfg.DataDir) || len(cfg.Exports) == 0 {
				t.Fatalf("Validate accepted %+v", cfg)
			}
			for i := range cfg.Exports {
				if len(cfg.Exports[i].clientPrefixes()) == 0 { // panics on a bad entry
					t.Fatalf("export %d allows nobody", i)
				}
			}
		}
	})
}
