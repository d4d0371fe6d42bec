package chunkstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Chunk header layout (little-endian), see doc.go for the diagram.
const (
	headerSize   = 64
	headerMagic  = "NCHK"
	headerFormat = 1
	maxDataLen   = 1 << 30
	offMagic     = 0
	offFormat    = 4
	offHeaderLen = 6
	offIno       = 8
	offVersion   = 16
	offIndex     = 32
	offLength    = 40
	offDataCRC   = 44
	offReserved  = 48
	offHeaderCRC = 60
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the decoded chunk header.
type header struct {
	key     Key
	length  uint32 // data bytes after the header
	dataCRC uint32 // CRC32C of the data
}

// encodeHeader writes the header of a chunk holding data under key.
func encodeHeader(dst *[headerSize]byte, key Key, data []byte) {
	header{key: key, length: uint32(len(data)), dataCRC: crc32.Checksum(data, castagnoli)}.encode(dst)
}

// encode is the inverse of decodeHeader.
func (h header) encode(dst *[headerSize]byte) {
	*dst = [headerSize]byte{}
	copy(dst[offMagic:], headerMagic)
	binary.LittleEndian.PutUint16(dst[offFormat:], headerFormat)
	binary.LittleEndian.PutUint16(dst[offHeaderLen:], headerSize)
	binary.LittleEndian.PutUint64(dst[offIno:], h.key.Ino)
	copy(dst[offVersion:offVersion+16], h.key.Version[:])
	binary.LittleEndian.PutUint64(dst[offIndex:], h.key.Index)
	binary.LittleEndian.PutUint32(dst[offLength:], h.length)
	binary.LittleEndian.PutUint32(dst[offDataCRC:], h.dataCRC)
	binary.LittleEndian.PutUint32(dst[offHeaderCRC:], crc32.Checksum(dst[:offHeaderCRC], castagnoli))
}

// decodeHeader parses and checks a chunk header. Every failure wraps
// ErrCorrupt.
func decodeHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerSize {
		return h, fmt.Errorf("%w: header is %d bytes, want %d", ErrCorrupt, len(b), headerSize)
	}
	b = b[:headerSize]
	if string(b[offMagic:offMagic+4]) != headerMagic {
		return h, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[offMagic:offMagic+4])
	}
	if got := binary.LittleEndian.Uint32(b[offHeaderCRC:]); got != crc32.Checksum(b[:offHeaderCRC], castagnoli) {
		return h, fmt.Errorf("%w: header checksum %08x does not match", ErrCorrupt, got)
	}
	// The checksum is right, so what follows is what a writer wrote; a
	// format this code does not know is treated like damage (the chunk is
	// dropped and refetched), which is the right thing for a cache.
	if f := binary.LittleEndian.Uint16(b[offFormat:]); f != headerFormat {
		return h, fmt.Errorf("%w: header format %d, want %d", ErrCorrupt, f, headerFormat)
	}
	if n := binary.LittleEndian.Uint16(b[offHeaderLen:]); n != headerSize {
		return h, fmt.Errorf("%w: header length %d, want %d", ErrCorrupt, n, headerSize)
	}
	for _, c := range b[offReserved:offHeaderCRC] {
		if c != 0 {
			return h, fmt.Errorf("%w: reserved header bytes are not zero", ErrCorrupt)
		}
	}
	h.key.Ino = binary.LittleEndian.Uint64(b[offIno:])
	copy(h.key.Version[:], b[offVersion:offVersion+16])
	h.key.Index = binary.LittleEndian.Uint64(b[offIndex:])
	h.length = binary.LittleEndian.Uint32(b[offLength:])
	if h.length > maxDataLen {
		return h, fmt.Errorf("%w: data length %d over %d", ErrCorrupt, h.length, maxDataLen)
	}
	h.dataCRC = binary.LittleEndian.Uint32(b[offDataCRC:])
	return h, nil
}

// check verifies that the header belongs to key and to a file of fileSize
// bytes.
func (h header) check(key Key, fileSize int64) error {
	if h.key != key {
		return fmt.Errorf("%w: header names chunk %v", ErrCorrupt, h.key)
	}
	if want := int64(headerSize) + int64(h.length); want != fileSize {
		return fmt.Errorf("%w: file is %d bytes, header says %d", ErrCorrupt, fileSize, want)
	}
	return nil
}
