package meta

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Every value meta stores is framed as a record:
//
//	+------+------+---------------------+------------------+
//	| kind | ver  |  payload (kind/ver) | CRC32C (4 bytes) |
//	+------+------+---------------------+------------------+
//
// The CRC32C (Castagnoli) covers kind, version and payload, so a value
// moved under the wrong key type, truncated, or bit-flipped is rejected
// with ErrCorrupt instead of being decoded.

// recordKind tags what a record holds, so that a value copied between
// buckets by a bug is caught by its check.
type recordKind uint8

const (
	kindSchema    recordKind = 1
	kindHandleKey recordKind = 2
	kindCounter   recordKind = 3
	kindExportID  recordKind = 4
	kindInode     recordKind = 5
	kindIndex     recordKind = 6
	kindPin       recordKind = 7
	kindGen       recordKind = 8
	kindClean     recordKind = 9
	kindAttr      recordKind = 10
	kindLookup    recordKind = 11
	kindListing   recordKind = 12
	kindListed    recordKind = 13
	kindMode      recordKind = 14
)

const recordVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// seal frames payload as a record of kind k.
func seal(k recordKind, payload []byte) []byte {
	b := make([]byte, 0, 2+len(payload)+4)
	b = append(b, byte(k), recordVersion)
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// open checks a record of kind k and returns its payload (a sub-slice of b).
func open(k recordKind, b []byte) ([]byte, error) {
	if len(b) < 6 {
		return nil, fmt.Errorf("record of %d bytes: %w", len(b), ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("record checksum mismatch: %w", ErrCorrupt)
	}
	if recordKind(body[0]) != k {
		return nil, fmt.Errorf("record kind %d, want %d: %w", body[0], k, ErrCorrupt)
	}
	if body[1] != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d: %w", body[1], recordVersion, ErrCorrupt)
	}
	return body[2:], nil
}

func sealUint64(k recordKind, v uint64) []byte {
	return seal(k, binary.BigEndian.AppendUint64(nil, v))
}

func openUint64(k recordKind, b []byte) (uint64, error) {
	p, err := open(k, b)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("counter payload of %d bytes: %w", len(p), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(p), nil
}
