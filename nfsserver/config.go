package nfsserver

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
)

// Squash says which callers are mapped to the anonymous user of an export.
type Squash uint8

const (
	// SquashNone keeps every caller's credentials.
	SquashNone Squash = iota
	// SquashRoot maps uid 0 to AnonUID and gid 0 to AnonGID.
	SquashRoot
	// SquashAll maps every caller to AnonUID/AnonGID with no extra groups.
	SquashAll
)

func (s Squash) String() string {
	switch s {
	case SquashNone:
		return "none"
	case SquashRoot:
		return "root"
	case SquashAll:
		return "all"
	}
	return fmt.Sprintf("squash(%d)", uint8(s))
}

// ParseSquash parses "none", "root" or "all".
func ParseSquash(s string) (Squash, error) {
	switch s {
	case "none", "":
		return SquashNone, nil
	case "root":
		return SquashRoot, nil
	case "all":
		return SquashAll, nil
	}
	return 0, fmt.Errorf("parse squash %q: %w", s, ErrInvalidConfig)
}

// Export is one file system tree clients may mount.
type Export struct {
	// ID is the export id carried in file handles (and given to the FS).
	// It must be unique and must stay the same across restarts, or
	// clients' handles go stale.
	ID uint16
	// Path is what clients mount ("/data"): absolute, clean, ASCII.
	Path string
	// Clients are the networks allowed to mount and use the export;
	// empty means everyone.
	Clients []netip.Prefix
	// ReadOnly refuses every mutating procedure with NFS3ERR_ROFS.
	ReadOnly bool
	// Squash maps callers to AnonUID/AnonGID (see Squash).
	Squash Squash
	// AnonUID and AnonGID are the credentials of squashed and AUTH_NONE
	// callers (65534, "nobody", by default).
	AnonUID uint32
	AnonGID uint32
}

// allows reports whether a client at addr may use the export.
func (e *Export) allows(addr netip.Addr) bool {
	if len(e.Clients) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range e.Clients {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Config configures a Server.
type Config struct {
	// Listen is the TCP address serving NFS v3 and MOUNT v3 ("127.0.0.1:2049").
	Listen string
	// PortmapListen, if not empty, is the address (TCP and UDP) of the
	// built-in portmapper (program 100000 v2), e.g. "0.0.0.0:111".
	PortmapListen string
	// Exports are the trees served; at least one.
	Exports []Export
	// HandleKey is the 32-byte key of the file handle MAC. It must stay the
	// same across restarts, or every handle clients hold goes bad.
	HandleKey []byte
	// MaxInFlightPerConn bounds the requests of one connection processed
	// at once; a client sending more gets TCP backpressure.
	MaxInFlightPerConn int
}

// DefaultMaxInFlightPerConn is the MaxInFlightPerConn of DefaultConfig.
const DefaultMaxInFlightPerConn = 64

// DefaultConfig returns a Config with the defaults filled in; Exports and
// HandleKey must still be set.
func DefaultConfig() Config {
	return Config{
		Listen:             "127.0.0.1:2049",
		MaxInFlightPerConn: DefaultMaxInFlightPerConn,
	}
}

// Validate reports every problem of c at once (errors.Join), each matching
// ErrInvalidConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidConfig))
	}
	if c.Listen == "" {
		bad("listen: empty")
	}
	if len(c.HandleKey) != handleKeyBytes {
		bad("handle key: %d bytes, want %d", len(c.HandleKey), handleKeyBytes)
	}
	if c.MaxInFlightPerConn < 1 {
		bad("max in flight per connection: %d, want >= 1", c.MaxInFlightPerConn)
	}
	if len(c.Exports) == 0 {
		bad("exports: none")
	}
	ids := make(map[uint16]int)
	paths := make(map[string]int)
	for i, e := range c.Exports {
		switch {
		case !strings.HasPrefix(e.Path, "/"):
			bad("exports[%d].path %q: not absolute", i, e.Path)
		case path.Clean(e.Path) != e.Path:
			bad("exports[%d].path %q: not clean (want %q)", i, e.Path, path.Clean(e.Path))
		case len(e.Path) > mount.MNTPATHLEN:
			bad("exports[%d].path: longer than %d bytes", i, mount.MNTPATHLEN)
		}
		for j := 0; j < len(e.Path); j++ {
			if e.Path[j] >= 0x80 {
				bad("exports[%d].path %q: not ASCII (MOUNT paths are ASCII)", i, e.Path)
				break
			}
		}
		if j, ok := ids[e.ID]; ok {
			bad("exports[%d].id %d: also used by exports[%d]", i, e.ID, j)
		}
		ids[e.ID] = i
		if j, ok := paths[e.Path]; ok {
			bad("exports[%d].path %q: also used by exports[%d]", i, e.Path, j)
		}
		paths[e.Path] = i
		for k, p := range e.Clients {
			if !p.IsValid() {
				bad("exports[%d].clients[%d]: invalid prefix", i, k)
			}
		}
		if e.Squash > SquashAll {
			bad("exports[%d].squash: %v", i, e.Squash)
		}
	}
	return errors.Join(errs...)
}
