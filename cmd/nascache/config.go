package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/nascache/nascache/backend/nfs"
	"github.com/nascache/nascache/cachefs"
)

// Defaults for keys a config file may leave out.
const (
	defaultListen      = "127.0.0.1:2049"
	defaultAdminListen = "127.0.0.1:9470"
	defaultDataDir     = "/var/lib/nascache"
	defaultLogLevel    = "info"
	defaultLogFormat   = "auto"
	defaultSquash      = "none"
	// defaultCacheSize bounds the chunk cache when cache_size is left
	// out: small enough for any server's data disk, large enough to hold
	// a useful working set. Production configs set it to most of the
	// SSD (the README says so).
	defaultCacheSize = "10GiB"
	// defaultChunkSize is the unit of the data cache and of origin reads.
	defaultChunkSize = "1MiB"
	// defaultOriginConcurrency bounds chunk fetches running against the
	// origins at once.
	defaultOriginConcurrency = 32
	// defaultConsistency is strict: nascache then never shows a client
	// an older view of the origin than the origin itself (every GETATTR
	// and READ revalidates, file data is still cached by version), which
	// is what a client mounting a NAS that others change expects.
	// immutable and ttl:D are opt-in per export.
	defaultConsistency = "strict"
	// maxChunkSize bounds chunk_size.
	maxChunkSize = 64 << 20
	// defaultAnonID is nobody/nogroup on Linux: the uid/gid squashed
	// callers become.
	defaultAnonID = 65534
)

// Config is the whole of a node's configuration file. Field tags are the
// YAML keys; every key is documented in the README's config reference.
type Config struct {
	// Listen is the TCP address of NFS and MOUNT (one port).
	Listen string `yaml:"listen"`
	// PortmapListen is the address of the portmapper responder (program
	// 100000 v2); empty turns it off.
	PortmapListen string `yaml:"portmap_listen"`
	// AdminListen is the HTTP address of /healthz and /metrics; empty
	// turns the admin server off.
	AdminListen string `yaml:"admin_listen"`
	// DataDir holds the meta database and the handle key. Absolute.
	DataDir string `yaml:"data_dir"`
	// LogLevel is a zerolog level: trace, debug, info, warn, error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is auto (console on a terminal, JSON otherwise), json or
	// console.
	LogFormat string `yaml:"log_format"`
	// CacheSize bounds the chunk cache under data_dir/chunks, with a
	// binary or decimal suffix (200GiB, 500GB, 1TiB); 0 turns the data
	// cache off.
	CacheSize string `yaml:"cache_size"`
	// ChunkSize is the data cache's chunk size (1MiB).
	ChunkSize string `yaml:"chunk_size"`
	// OriginConcurrency bounds the chunk fetches running against the
	// origins at once (32).
	OriginConcurrency int `yaml:"origin_concurrency"`
	// Exports are the trees clients mount.
	Exports []ExportConfig `yaml:"exports"`
}

// ExportConfig is one entry of exports.
type ExportConfig struct {
	// Path is what clients mount ("/data").
	Path string `yaml:"path"`
	// Origin is where the data lives: file:///abs/dir or
	// nfs://host[:port]/export[?mountport=N].
	Origin string `yaml:"origin"`
	// Clients are the networks allowed to mount and call (CIDR prefixes
	// or single addresses); empty means everyone.
	Clients []string `yaml:"clients"`
	// ReadOnly makes every change fail with NFS3ERR_ROFS.
	ReadOnly bool `yaml:"read_only"`
	// Squash is none, root (uid 0 becomes anon) or all (everyone does).
	Squash string `yaml:"squash"`
	// AnonUID and AnonGID are what squashed callers become (default
	// 65534). Pointers so that an explicit 0 differs from "not set".
	AnonUID *uint32 `yaml:"anon_uid"`
	AnonGID *uint32 `yaml:"anon_gid"`
	// Consistency is strict (default), immutable or ttl:DURATION: how
	// long attributes and lookups from the origin are trusted.
	Consistency string `yaml:"consistency"`
}

// Problem is one thing wrong with a config, with the key at fault in the
// form exports[1].origin.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// ConfigError lists every problem found in a config at once.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// problems collects Problems while checking a config.
type problems []Problem

func (ps *problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &ConfigError{Problems: ps}
}

// loadConfig reads, decodes and validates the config file at file.
func loadConfig(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", file, err)
	}
	cfg, err := decodeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	return cfg, nil
}

// decodeConfig parses YAML strictly: every unknown key is reported with its
// path and line, together with every type error. Defaults fill the keys
// left out.
func decodeConfig(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ConfigError{Problems: []Problem{{Msg: "not valid YAML: " + err.Error()}}}
	}
	var ps problems
	if len(root.Content) > 0 {
		checkKeys(root.Content[0], reflect.TypeFor[Config](), "", &ps)
	}
	// Keys left out keep these values; a key written as "" is empty (for
	// admin_listen and portmap_listen: off).
	cfg := &Config{
		Listen:      defaultListen,
		AdminListen: defaultAdminListen,
		DataDir:     defaultDataDir,
		LogLevel:    defaultLogLevel,
		LogFormat:   defaultLogFormat,

		CacheSize:         defaultCacheSize,
		ChunkSize:         defaultChunkSize,
		OriginConcurrency: defaultOriginConcurrency,
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &ConfigError{Problems: []Problem{{Msg: err.Error()}}}
		}
		for _, m := range te.Errors {
			// Unknown keys were already reported by checkKeys, with
			// their full path.
			if strings.Contains(m, " not found in type ") {
				continue
			}
			ps.add("", "%s", m)
		}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	cfg.setExportDefaults()
	return cfg, nil
}

// checkKeys walks a YAML mapping against the struct type t and reports
// every key that has no field, naming its full path.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string, ps *problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				slices.Sort(known)
				ps.add(key, "unknown key (line %d); known keys: %s", k.Line, strings.Join(known, ", "))
				continue
			}
			checkKeys(v, ft, key, ps)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, v := range n.Content {
			checkKeys(v, t.Elem(), fmt.Sprintf("%s[%d]", prefix, i), ps)
		}
	}
}

// setDefaults fills the empty keys of a config built in code (the demo's)
// with their defaults; admin_listen and portmap_listen stay off when empty.
func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if c.LogLevel == "" {
		c.LogLevel = defaultLogLevel
	}
	if c.LogFormat == "" {
		c.LogFormat = defaultLogFormat
	}
	if c.CacheSize == "" {
		c.CacheSize = defaultCacheSize
	}
	if c.ChunkSize == "" {
		c.ChunkSize = defaultChunkSize
	}
	if c.OriginConcurrency == 0 {
		c.OriginConcurrency = defaultOriginConcurrency
	}
	c.setExportDefaults()
}

// setExportDefaults fills the keys each export left out.
func (c *Config) setExportDefaults() {
	for i := range c.Exports {
		e := &c.Exports[i]
		if e.Squash == "" {
			e.Squash = defaultSquash
		}
		if e.Consistency == "" {
			e.Consistency = defaultConsistency
		}
		if e.AnonUID == nil {
			e.AnonUID = ptr(uint32(defaultAnonID))
		}
		if e.AnonGID == nil {
			e.AnonGID = ptr(uint32(defaultAnonID))
		}
	}
}

func ptr[T any](v T) *T { return &v }

// Validate reports every problem of c at once, each with its key. It looks
// at the file system only to check that file:// origins are directories.
func (c *Config) Validate() error {
	var ps problems
	type bound struct {
		key  string
		addr netip.AddrPort
		any  bool // unspecified host: clashes with every host on the port
	}
	var addrs []bound
	checkAddr := func(key, v string, required bool) {
		if v == "" {
			if required {
				ps.add(key, "must be set (host:port)")
			}
			return
		}
		ap, unspecified, err := parseListenAddr(v)
		if err != nil {
			ps.add(key, "%v", err)
			return
		}
		if ap.Port() == 0 {
			return // an ephemeral port never clashes
		}
		for _, b := range addrs {
			if b.addr.Port() == ap.Port() && (b.any || unspecified || b.addr.Addr() == ap.Addr()) {
				ps.add(key, "%s clashes with %s (%s)", v, b.key, b.addr)
			}
		}
		addrs = append(addrs, bound{key: key, addr: ap, any: unspecified})
	}
	checkAddr("listen", c.Listen, true)
	checkAddr("portmap_listen", c.PortmapListen, false)
	checkAddr("admin_listen", c.AdminListen, false)

	switch {
	case c.DataDir == "":
		ps.add("data_dir", "must be set to an absolute directory")
	case !filepath.IsAbs(c.DataDir):
		ps.add("data_dir", "%q is not an absolute path", c.DataDir)
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		ps.add("log_level", "%q is not one of trace, debug, info, warn, error", c.LogLevel)
	}
	if !slices.Contains([]string{"auto", "json", "console"}, c.LogFormat) {
		ps.add("log_format", "%q is not one of auto, json, console", c.LogFormat)
	}

	cacheBytes, err := c.cacheSizeBytes()
	if err != nil {
		ps.add("cache_size", "%v", err)
	}
	chunkBytes, err := c.chunkSizeBytes()
	switch {
	case err != nil:
		ps.add("chunk_size", "%v", err)
	case chunkBytes < 4096 || chunkBytes > maxChunkSize:
		ps.add("chunk_size", "%q is not in 4KiB..64MiB", c.ChunkSize)
	case cacheBytes > 0 && cacheBytes < 2*chunkBytes:
		ps.add("cache_size", "%q holds fewer than two chunks of chunk_size %q", c.CacheSize, c.ChunkSize)
	}
	if c.OriginConcurrency < 0 || c.OriginConcurrency > 1024 {
		ps.add("origin_concurrency", "%d is not in 1..1024", c.OriginConcurrency)
	}

	if len(c.Exports) == 0 {
		ps.add("exports", "at least one export is needed")
	}
	seen := map[string]int{}
	for i, e := range c.Exports {
		key := fmt.Sprintf("exports[%d]", i)
		switch {
		case e.Path == "":
			ps.add(key+".path", "must be set (what clients mount, e.g. /data)")
		case !strings.HasPrefix(e.Path, "/"):
			ps.add(key+".path", "%q must start with /", e.Path)
		case path.Clean(e.Path) != e.Path:
			ps.add(key+".path", "%q is not clean (want %q)", e.Path, path.Clean(e.Path))
		case len(e.Path) > 1024:
			ps.add(key+".path", "longer than 1024 bytes (MNTPATHLEN)")
		default:
			if j, dup := seen[e.Path]; dup {
				ps.add(key+".path", "%q is already exported by exports[%d]", e.Path, j)
			} else {
				seen[e.Path] = i
			}
		}
		if err := checkOrigin(e.Origin); err != nil {
			ps.add(key+".origin", "%v", err)
		}
		for j, cl := range e.Clients {
			if _, err := parseClient(cl); err != nil {
				ps.add(fmt.Sprintf("%s.clients[%d]", key, j), "%v", err)
			}
		}
		if !slices.Contains([]string{"none", "root", "all"}, e.Squash) {
			ps.add(key+".squash", "%q is not one of none, root, all", e.Squash)
		}
		if _, err := e.consistency(); err != nil {
			ps.add(key+".consistency", "%q is not strict, immutable or ttl:DURATION (like ttl:2s)", e.Consistency)
		}
	}
	return ps.err()
}

// cacheSizeBytes is cache_size in bytes (its default when empty).
func (c *Config) cacheSizeBytes() (int64, error) {
	return parseSize(cmp.Or(c.CacheSize, defaultCacheSize))
}

// chunkSizeBytes is chunk_size in bytes (its default when empty).
func (c *Config) chunkSizeBytes() (int64, error) {
	return parseSize(cmp.Or(c.ChunkSize, defaultChunkSize))
}

// originConcurrency is origin_concurrency (its default when 0).
func (c *Config) originConcurrency() int {
	return cmp.Or(c.OriginConcurrency, defaultOriginConcurrency)
}

// consistency is the export's consistency (its default when empty).
func (e *ExportConfig) consistency() (cachefs.Consistency, error) {
	return cachefs.ParseConsistency(cmp.Or(e.Consistency, defaultConsistency))
}

// sizeUnits are the suffixes parseSize knows, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// parseSize parses a byte size: a whole number with an optional suffix,
// binary (KiB, MiB, GiB, TiB; K, M, G, T) or decimal (KB, MB, GB, TB).
func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size like 200GiB, 500MB or 1048576", v)
	}
	if n > 0 && mult > (1<<62)/n {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return n * mult, nil
}

// parseListenAddr parses host:port where host is an IP literal, empty or
// "localhost" (both mean what net.Listen makes of them).
func parseListenAddr(v string) (ap netip.AddrPort, unspecified bool, err error) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return ap, false, fmt.Errorf("%q is not host:port", v)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return ap, false, fmt.Errorf("%q: port %q is not a number in 0..65535", v, port)
	}
	var addr netip.Addr
	switch host {
	case "":
		addr = netip.IPv6Unspecified()
	case "localhost":
		addr = netip.MustParseAddr("127.0.0.1")
	default:
		addr, err = netip.ParseAddr(host)
		if err != nil {
			return ap, false, fmt.Errorf("%q: host %q is not an IP address", v, host)
		}
	}
	return netip.AddrPortFrom(addr, uint16(p)), addr.IsUnspecified(), nil
}

// parseClient parses one clients entry: a CIDR prefix or a single address.
func parseClient(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (like 10.0.0.0/8)", v)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", v, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", v)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// clientPrefixes returns the prefixes of an export's clients; an empty list
// means everyone. Call only on a validated config.
func (e *ExportConfig) clientPrefixes() []netip.Prefix {
	if len(e.Clients) == 0 {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	out := make([]netip.Prefix, 0, len(e.Clients))
	for _, c := range e.Clients {
		p, err := parseClient(c)
		if err != nil {
			panic("clientPrefixes on an unvalidated config: " + err.Error())
		}
		out = append(out, p)
	}
	return out
}

// checkOrigin checks an origin URL: its scheme is supported, its parts are
// well formed and a file:// origin is an existing directory.
func checkOrigin(v string) error {
	if v == "" {
		return errors.New("must be set (file:///abs/dir or nfs://host/export)")
	}
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("%q is not a URL", v)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return fmt.Errorf("%q: a file origin has no host (file:///abs/dir)", v)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q: a file origin takes no query or fragment", v)
		}
		if !filepath.IsAbs(u.Path) {
			return fmt.Errorf("%q: path must be absolute", v)
		}
		fi, err := os.Stat(u.Path)
		if err != nil {
			return fmt.Errorf("directory %s: %w", u.Path, errors.Unwrap(err))
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", u.Path)
		}
	case "nfs":
		// backend/nfs owns the URL's syntax (ports, query keys); parsing
		// does not touch the network.
		if _, err := nfs.ParseURL(v); err != nil {
			return err
		}
	case "":
		return fmt.Errorf("%q has no scheme (file, nfs)", v)
	default:
		return fmt.Errorf("scheme %q not supported (file, nfs)", u.Scheme)
	}
	return nil
}
