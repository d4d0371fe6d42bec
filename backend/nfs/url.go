package nfs

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Target is what an origin URL names:
//
//	nfs://HOST[:PORT]/EXPORT/PATH[?KEY=VALUE&...]
//
// HOST is a name or an IP address (IPv6 in brackets); PORT is the NFS port
// (omitted: ask the portmapper); the path is the export as the server's
// MOUNT protocol knows it (what `mount host:/export/path` would name).
// Query keys, all optional:
//
//	mountport=N    MOUNT v3 port (omitted: ask the portmapper)
//	portmapport=N  portmapper port used for the lookups (default 111)
//	uid=N, gid=N   AUTH_SYS identity for MNT and Root() (default 0, 0);
//	               every other call carries its caller's credentials
//	conns=N        TCP connections to the NFS port (default Options.Conns)
//	privport=BOOL  bind source ports below 1024 (default Options.PrivilegedPort)
//	version=3      accepted for libnfs compatibility; only 3 is supported
//
// Unknown keys are an error, so a typo does not go unnoticed.
type Target struct {
	Host        string
	Port        int // 0: portmapper lookup
	MountPort   int // 0: portmapper lookup
	PortmapPort int
	Export      string
	UID, GID    uint32
	Conns       int   // 0: Options.Conns
	PrivPort    *bool // nil: Options.PrivilegedPort
}

const defaultPortmapPort = 111

// ParseURL parses an origin URL; see Target.
func ParseURL(raw string) (Target, error) {
	t := Target{PortmapPort: defaultPortmapPort}
	u, err := url.Parse(raw)
	if err != nil {
		return t, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	bad := func(format string, args ...any) (Target, error) {
		return t, fmt.Errorf("%w: %q: %s", ErrBadURL, raw, fmt.Sprintf(format, args...))
	}
	if u.Scheme != "nfs" {
		return bad("scheme must be nfs")
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return bad("user info, fragments and opaque URLs are not supported")
	}
	t.Host = u.Hostname()
	if t.Host == "" {
		return bad("no host")
	}
	if strings.Contains(t.Host, ":") && net.ParseIP(t.Host) == nil {
		return bad("host %q is neither a name nor an IP address", t.Host)
	}
	if p := u.Port(); p != "" {
		if t.Port, err = parsePort(p); err != nil {
			return bad("port: %v", err)
		}
	}
	t.Export = u.Path
	if t.Export == "" || t.Export[0] != '/' || path.Clean(t.Export) != t.Export {
		return bad("export path must be absolute and clean")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	for key, vals := range q {
		if len(vals) != 1 {
			return bad("%s given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "mountport":
			t.MountPort, err = parsePort(v)
		case "portmapport":
			t.PortmapPort, err = parsePort(v)
		case "uid", "gid":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			if key == "uid" {
				t.UID = uint32(n)
			} else {
				t.GID = uint32(n)
			}
		case "conns":
			t.Conns, err = strconv.Atoi(v)
			if err == nil && (t.Conns < 1 || t.Conns > 64) {
				err = fmt.Errorf("%d not in 1..64", t.Conns)
			}
		case "privport":
			var b bool
			b, err = strconv.ParseBool(v)
			t.PrivPort = &b
		case "version":
			if v != "3" {
				err = fmt.Errorf("only NFS version 3 is supported")
			}
		default:
			return bad("unknown key %q", key)
		}
		if err != nil {
			return bad("%s: %v", key, err)
		}
	}
	return t, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	return p, nil
}

// String is the canonical URL of t; ParseURL(t.String()) gives t back.
func (t Target) String() string {
	host := t.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if t.Port != 0 {
		host = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	}
	var q []string
	if t.MountPort != 0 {
		q = append(q, "mountport="+strconv.Itoa(t.MountPort))
	}
	if t.PortmapPort != defaultPortmapPort && t.PortmapPort != 0 {
		q = append(q, "portmapport="+strconv.Itoa(t.PortmapPort))
	}
	if t.UID != 0 {
		q = append(q, "uid="+strconv.FormatUint(uint64(t.UID), 10))
	}
	if t.GID != 0 {
		q = append(q, "gid="+strconv.FormatUint(uint64(t.GID), 10))
	}
	if t.Conns != 0 {
		q = append(q, "conns="+strconv.Itoa(t.Conns))
	}
	if t.PrivPort != nil {
		q = append(q, "privport="+strconv.FormatBool(*t.PrivPort))
	}
	sort.Strings(q)
	u := url.URL{Scheme: "nfs", Host: host, Path: t.Export, RawQuery: strings.Join(q, "&")}
	return u.String()
}
