package chunkstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
)

// Version identifies one version of an origin file's content: for an NFS
// origin a digest of (size, mtime, ctime), for S3 of the ETag. Chunks of a
// different Version are different chunks, so bytes of an old version can
// never be served for a new one.
type Version [16]byte

// VersionOf derives a Version from the bytes that identify an origin file's
// content (the first 16 bytes of their SHA-256).
func VersionOf(identity []byte) Version {
	sum := sha256.Sum256(identity)
	var v Version
	copy(v[:], sum[:])
	return v
}

// String returns the version in hex.
func (v Version) String() string { return hex.EncodeToString(v[:]) }

// Key names a chunk: byte range [Index*chunkSize, (Index+1)*chunkSize) of
// version Version of the file with nascache inode Ino. The chunk size is the
// caller's business; the store keeps whatever bytes it is given.
type Key struct {
	Ino     uint64
	Version Version
	Index   uint64
}

// String returns "ino/version/index" for logs and errors.
func (k Key) String() string {
	return fmt.Sprintf("%d/%s/%d", k.Ino, k.Version, k.Index)
}

// File names. A chunk lives at chunks/FF/IIIIIIIIIIIIIIII-VVVV…VVVV-XXXXXXXXXXXXXXXX
// where FF is fanout(key), I the inode, V the version and X the index, all
// lower-case hex of fixed width.
const (
	formatFile  = "FORMAT"
	lockFile    = "LOCK"
	tmpDir      = "tmp"
	chunksDir   = "chunks"
	fanoutDirs  = 256
	chunkName   = 16 + 1 + 32 + 1 + 16
	formatMagic = "nascache chunkstore 1\n"
)

// fanout picks one of the 256 sub-directories. Consecutive inodes and
// consecutive indexes of one file both spread over all of them.
func fanout(k Key) int { return int((k.Ino ^ k.Index) & 0xff) }

// hexDigits are the lower-case hex digits of every name in the store.
const hexDigits = "0123456789abcdef"

// fanoutName is the sub-directory name of fanout f.
func fanoutName(f int) string { return string([]byte{hexDigits[f>>4], hexDigits[f&0xf]}) }

// parseFanoutName is the inverse of fanoutName.
func parseFanoutName(name string) (int, bool) {
	if len(name) != 2 {
		return 0, false
	}
	hi, ok1 := hexDigit(name[0])
	lo, ok2 := hexDigit(name[1])
	return hi<<4 | lo, ok1 && ok2
}

// hexDigit decodes one lower-case hex digit.
func hexDigit(c byte) (int, bool) {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0'), true
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10, true
	}
	return 0, false
}

// chunkRelName is the length of a chunk's path relative to chunks/:
// "FF/" and the file name.
const chunkRelName = 3 + chunkName

// The names below are built by appending fixed-width hex to a caller's
// buffer, which can live on the stack: a hit that has to open its chunk
// builds the path with no fmt, no filepath.Join and no allocation (see
// Store.openChunk).

// appendFileName appends the chunk's file name inside its fanout
// directory (chunkName bytes) to dst.
func (k Key) appendFileName(dst []byte) []byte {
	dst = appendHex64(dst, k.Ino)
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, k.Version[:])
	dst = append(dst, '-')
	return appendHex64(dst, k.Index)
}

// appendChunkPath appends the chunk's path relative to the chunks
// directory, "FF/name" (chunkRelName bytes), to dst.
func (k Key) appendChunkPath(dst []byte) []byte {
	f := fanout(k)
	dst = append(dst, hexDigits[f>>4], hexDigits[f&0xf], '/')
	return k.appendFileName(dst)
}

// fileName is the chunk's file name inside its fanout directory.
func (k Key) fileName() string {
	var b [chunkName]byte
	return string(k.appendFileName(b[:0]))
}

// relPath is the chunk's path relative to the store directory.
func (k Key) relPath() string {
	var b [len(chunksDir) + 1 + chunkRelName]byte
	return string(k.appendChunkPath(append(append(b[:0], chunksDir...), filepath.Separator)))
}

// appendHex64 appends v as 16 lower-case hex digits.
func appendHex64(dst []byte, v uint64) []byte {
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return append(dst, b[:]...)
}

// parseFileName is the inverse of fileName; it accepts only the exact
// canonical spelling, so every chunk has one name.
func parseFileName(name string) (Key, bool) {
	var k Key
	if len(name) != chunkName || name[16] != '-' || name[49] != '-' {
		return k, false
	}
	for _, c := range []byte(name) {
		if c != '-' && !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return k, false
		}
	}
	ino, err := strconv.ParseUint(name[0:16], 16, 64)
	if err != nil {
		return k, false
	}
	if _, err := hex.Decode(k.Version[:], []byte(name[17:49])); err != nil {
		return k, false
	}
	idx, err := strconv.ParseUint(name[50:66], 16, 64)
	if err != nil {
		return k, false
	}
	k.Ino, k.Index = ino, idx
	return k, true
}

// hash mixes the key into 64 bits for the in-memory ghost queue
// (splitmix64 finaliser over the fields).
func (k Key) hash() uint64 {
	h := mix64(k.Ino ^ 0x9e3779b97f4a7c15)
	h = mix64(h ^ le64(k.Version[0:8]))
	h = mix64(h ^ le64(k.Version[8:16]))
	return mix64(h ^ k.Index)
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
