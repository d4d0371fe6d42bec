package nfsserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"

	"github.com/nascache/nascache/cachefs"
)

// File handle layout (see doc.go for the diagram).
const (
	handleBytes    = 32
	handleVersion  = 1
	handleMACBytes = 16
	handleKeyBytes = 32
	handleBodyEnd  = handleBytes - handleMACBytes
)

// handleCodec encodes NodeIDs as MAC'd file handles and checks them. It
// holds the immutable key and is safe for concurrent use.
type handleCodec struct {
	key []byte
	// macs holds keyed HMAC states (hash.Hash), reset before Put: every
	// call decodes at least one handle, and keying a fresh HMAC (two
	// SHA-256 blocks and three allocations) showed in profiles.
	macs sync.Pool
}

func newHandleCodec(key []byte) (*handleCodec, error) {
	if len(key) != handleKeyBytes {
		return nil, fmt.Errorf("handle key of %d bytes, want %d: %w", len(key), handleKeyBytes, ErrInvalidConfig)
	}
	return &handleCodec{key: append([]byte(nil), key...)}, nil
}

func (c *handleCodec) mac(body []byte, out []byte) {
	m, ok := c.macs.Get().(hash.Hash)
	if !ok {
		m = hmac.New(sha256.New, c.key)
	}
	m.Write(body)
	var sum [sha256.Size]byte
	copy(out, m.Sum(sum[:0])[:handleMACBytes])
	m.Reset()
	c.macs.Put(m)
}

// encode returns the handle of n.
func (c *handleCodec) encode(n cachefs.NodeID) []byte {
	h := make([]byte, handleBytes)
	h[0] = handleVersion
	h[1] = 0
	binary.BigEndian.PutUint16(h[2:4], n.Export)
	binary.BigEndian.PutUint64(h[4:12], n.Ino)
	binary.BigEndian.PutUint32(h[12:16], n.Gen)
	c.mac(h[:handleBodyEnd], h[handleBodyEnd:])
	return h
}

// decode checks h and returns the NodeID it names. Any malformed, foreign
// or altered handle gives an error matching ErrBadHandle.
func (c *handleCodec) decode(h []byte) (cachefs.NodeID, error) {
	if len(h) != handleBytes {
		return cachefs.NodeID{}, fmt.Errorf("decode handle of %d bytes: %w", len(h), ErrBadHandle)
	}
	if h[0] != handleVersion || h[1] != 0 {
		return cachefs.NodeID{}, fmt.Errorf("decode handle version %d.%d: %w", h[0], h[1], ErrBadHandle)
	}
	var want [handleMACBytes]byte
	c.mac(h[:handleBodyEnd], want[:])
	if !hmac.Equal(want[:], h[handleBodyEnd:]) {
		return cachefs.NodeID{}, fmt.Errorf("decode handle: MAC mismatch: %w", ErrBadHandle)
	}
	return cachefs.NodeID{
		Export: binary.BigEndian.Uint16(h[2:4]),
		Ino:    binary.BigEndian.Uint64(h[4:12]),
		Gen:    binary.BigEndian.Uint32(h[12:16]),
	}, nil
}
