package local

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/nascache/nascache/backend"
)

// A local handle names an object by its inode number and its path relative
// to the origin's root:
//
//	+-----+----------------+----------------------------------+
//	| ver | st_ino (u64 BE)| relative path ("" for the root)  |
//	+-----+----------------+----------------------------------+
//
// The path is clean: no leading or trailing "/", no empty, "." or ".."
// component, no NUL. Every use checks that the path still names st_ino;
// when it does not, the handle is stale (backend.ErrStale).
const handleVersion = 1

const handleHeader = 1 + 8

// maxPathBytes keeps every handle under backend.MaxHandleBytes.
const maxPathBytes = 4096

func encodeHandle(ino uint64, path string) backend.Handle {
	b := make([]byte, 0, handleHeader+len(path))
	b = append(b, handleVersion)
	b = binary.BigEndian.AppendUint64(b, ino)
	return append(b, path...)
}

func decodeHandle(h backend.Handle) (ino uint64, path string, err error) {
	if len(h) < handleHeader || h[0] != handleVersion {
		return 0, "", fmt.Errorf("local handle of %d bytes: %w", len(h), backend.ErrBadHandle)
	}
	path = string(h[handleHeader:])
	if !cleanPath(path) {
		return 0, "", fmt.Errorf("local handle path %q: %w", path, backend.ErrBadHandle)
	}
	return binary.BigEndian.Uint64(h[1:]), path, nil
}

// cleanPath reports whether p is a relative path this package would issue.
func cleanPath(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > maxPathBytes || strings.IndexByte(p, 0) >= 0 {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// checkName validates one directory entry name.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..", strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q: %w", name, backend.ErrInvalid)
	case len(name) > 255:
		return fmt.Errorf("name of %d bytes: %w", len(name), backend.ErrNameTooLong)
	}
	return nil
}

// join returns the path of name inside dir.
func join(dir, name string) (string, error) {
	p := name
	if dir != "" {
		p = dir + "/" + name
	}
	if len(p) > maxPathBytes {
		return "", fmt.Errorf("path of %d bytes: %w", len(p), backend.ErrNameTooLong)
	}
	return p, nil
}

// split returns the parent directory and last component of p; for the
// root it returns ("", ".").
func split(p string) (dir, name string) {
	if p == "" {
		return "", "."
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// osPath turns a relative path into what os.Root accepts.
func osPath(p string) string {
	if p == "" {
		return "."
	}
	return p
}
