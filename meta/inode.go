package meta

import (
	"encoding/binary"
	"fmt"

	"github.com/nascache/nascache/backend"
)

// MaxNameBytes is the longest entry name an inode record keeps.
const MaxNameBytes = 255

// Inode is one record of the inode table: a nascache inode number and what
// identifies the object at its origin.
type Inode struct {
	// Ino is the nascache inode number, allocated once, never reused.
	Ino uint64
	// Gen is the generation of this record; a NodeID must carry it.
	Gen uint32
	// Export is the id of the export the object belongs to.
	Export uint16
	Type   backend.FileType
	// Parent is the inode of the directory the object was last seen in
	// (0 for an export root) and Name its name there.
	Parent uint64
	Name   string
	// Handle is the origin handle, opaque to meta.
	Handle backend.Handle
	// FileID is the origin's number for the object (Attr.FileID).
	FileID uint64
}

// inode record payload (kindInode, version 1):
//
//	gen u32 | export u16 | type u8 | parent u64 | fileid u64 |
//	namelen u16 | name | handlelen u16 | handle
func encodeInode(in Inode) []byte {
	b := make([]byte, 0, 4+2+1+8+8+2+len(in.Name)+2+len(in.Handle))
	b = binary.BigEndian.AppendUint32(b, in.Gen)
	b = binary.BigEndian.AppendUint16(b, in.Export)
	b = append(b, byte(in.Type))
	b = binary.BigEndian.AppendUint64(b, in.Parent)
	b = binary.BigEndian.AppendUint64(b, in.FileID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(in.Name)))
	b = append(b, in.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(in.Handle)))
	b = append(b, in.Handle...)
	return seal(kindInode, b)
}

// decodeInode decodes a sealed inode record; the result shares no memory
// with b, so it may outlive the bolt transaction b came from.
func decodeInode(ino uint64, b []byte) (Inode, error) {
	p, err := open(kindInode, b)
	if err != nil {
		return Inode{}, err
	}
	const fixed = 4 + 2 + 1 + 8 + 8 + 2
	if len(p) < fixed {
		return Inode{}, fmt.Errorf("inode payload of %d bytes: %w", len(p), ErrCorrupt)
	}
	in := Inode{
		Ino:    ino,
		Gen:    binary.BigEndian.Uint32(p[0:]),
		Export: binary.BigEndian.Uint16(p[4:]),
		Type:   backend.FileType(p[6]),
		Parent: binary.BigEndian.Uint64(p[7:]),
		FileID: binary.BigEndian.Uint64(p[15:]),
	}
	nl := int(binary.BigEndian.Uint16(p[23:]))
	p = p[fixed:]
	if len(p) < nl+2 {
		return Inode{}, fmt.Errorf("inode name overruns record: %w", ErrCorrupt)
	}
	in.Name = string(p[:nl])
	p = p[nl:]
	hl := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if len(p) != hl {
		return Inode{}, fmt.Errorf("inode handle is %d bytes, record has %d: %w", hl, len(p), ErrCorrupt)
	}
	in.Handle = append(backend.Handle(nil), p...)
	return in, nil
}

func validInode(in Inode) error {
	switch {
	case len(in.Name) > MaxNameBytes:
		return fmt.Errorf("name of %d bytes: %w", len(in.Name), ErrInvalid)
	case len(in.Handle) > backend.MaxHandleBytes:
		return fmt.Errorf("handle of %d bytes: %w", len(in.Handle), ErrInvalid)
	case len(in.Handle) == 0:
		return fmt.Errorf("empty handle: %w", ErrInvalid)
	}
	return nil
}

func inoKey(ino uint64) []byte { return binary.BigEndian.AppendUint64(nil, ino) }

func indexKey(export uint16, fileID uint64) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 10), export)
	return binary.BigEndian.AppendUint64(b, fileID)
}
