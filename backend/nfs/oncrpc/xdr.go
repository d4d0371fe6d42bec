package oncrpc

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Encoder appends XDR (RFC 4506) items to a buffer. It never fails: the
// caller bounds what it encodes. Strings and opaques are written as raw
// bytes, so file names need not be ASCII (go-xdr's generated string
// encoders insist on ASCII, which real file systems do not).
type Encoder struct {
	buf []byte
}

// Uint32 appends an unsigned int.
func (e *Encoder) Uint32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }

// Int32 appends an int (enums too).
func (e *Encoder) Int32(v int32) { e.Uint32(uint32(v)) }

// Uint64 appends an unsigned hyper.
func (e *Encoder) Uint64(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

// Bool appends a bool.
func (e *Encoder) Bool(v bool) {
	if v {
		e.Uint32(1)
	} else {
		e.Uint32(0)
	}
}

// Fixed appends fixed-length opaque data with its padding.
func (e *Encoder) Fixed(p []byte) {
	e.buf = append(e.buf, p...)
	e.pad(len(p))
}

// Opaque appends variable-length opaque data: length, bytes, padding.
func (e *Encoder) Opaque(p []byte) {
	e.Uint32(uint32(len(p)))
	e.Fixed(p)
}

// String appends a string as variable-length opaque data.
func (e *Encoder) String(s string) {
	e.Uint32(uint32(len(s)))
	e.buf = append(e.buf, s...)
	e.pad(len(s))
}

// Write lets generated go-xdr types encode themselves (m.WriteTo(e)).
func (e *Encoder) Write(p []byte) (int, error) {
	e.buf = append(e.buf, p...)
	return len(p), nil
}

// Bytes returns what was encoded so far (valid until the next append).
func (e *Encoder) Bytes() []byte { return e.buf }

// Len is the number of bytes encoded so far.
func (e *Encoder) Len() int { return len(e.buf) }

func (e *Encoder) pad(n int) {
	if r := n & 3; r != 0 {
		e.buf = append(e.buf, make([]byte, 4-r)...)
	}
}

// padding returns the XDR padding after n bytes of opaque data.
func padding(n int) []byte {
	return zeros[:(4-n&3)&3]
}

var zeros = [4]byte{}

// Decoder reads XDR items from one reply record. The first error sticks:
// later reads return zero values and Err reports it, so a decoder can read
// a whole structure and check once. A Decoder is only valid inside the
// Request.Reply callback it was passed to.
type Decoder struct {
	r       io.Reader
	err     error
	scratch [8]byte
}

// NewDecoder returns a Decoder reading from r (tests and fuzzers decode
// recorded replies with it).
func NewDecoder(r io.Reader) *Decoder { return &Decoder{r: r} }

// Err is the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Fail records err (if none is recorded yet) so that decoding stops.
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Read makes a Decoder an io.Reader for generated go-xdr types
// (m.ReadFrom(d)). Errors it meets stick like any other.
func (d *Decoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		d.err = err
	}
	return n, err
}

func (d *Decoder) full(p []byte) bool {
	if d.err != nil {
		return false
	}
	if _, err := io.ReadFull(d.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.err = err
		return false
	}
	return true
}

// Uint32 reads an unsigned int.
func (d *Decoder) Uint32() uint32 {
	if !d.full(d.scratch[:4]) {
		return 0
	}
	return binary.BigEndian.Uint32(d.scratch[:4])
}

// Int32 reads an int (enums too).
func (d *Decoder) Int32() int32 { return int32(d.Uint32()) }

// Uint64 reads an unsigned hyper.
func (d *Decoder) Uint64() uint64 {
	if !d.full(d.scratch[:8]) {
		return 0
	}
	return binary.BigEndian.Uint64(d.scratch[:8])
}

// Bool reads a bool; anything but 0 or 1 is an error.
func (d *Decoder) Bool() bool {
	switch v := d.Uint32(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.Fail(fmt.Errorf("%w: bool value %d", ErrGarbageReply, v))
		return false
	}
}

// Fixed reads len(p) bytes of fixed-length opaque data and its padding.
func (d *Decoder) Fixed(p []byte) {
	if d.full(p) {
		d.skipPad(len(p))
	}
}

// Opaque reads variable-length opaque data of at most maxBytes into a new
// slice.
func (d *Decoder) Opaque(maxBytes uint32) []byte {
	n := d.Uint32()
	if d.err != nil {
		return nil
	}
	if n > maxBytes {
		d.Fail(fmt.Errorf("%w: opaque of %d bytes exceeds %d", ErrGarbageReply, n, maxBytes))
		return nil
	}
	p := make([]byte, n)
	d.Fixed(p)
	return p
}

// OpaqueInto reads variable-length opaque data straight into p (no
// intermediate buffer) and returns its length; data longer than p is an
// error.
func (d *Decoder) OpaqueInto(p []byte) int {
	n := d.Uint32()
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(len(p)) {
		d.Fail(fmt.Errorf("%w: opaque of %d bytes exceeds the %d-byte buffer", ErrGarbageReply, n, len(p)))
		return 0
	}
	d.Fixed(p[:n])
	return int(n)
}

// skipOpaque skips variable-length opaque data of at most maxBytes and
// its padding.
func (d *Decoder) skipOpaque(maxBytes uint32) {
	n := d.Uint32()
	if d.err != nil {
		return
	}
	if n > maxBytes {
		d.Fail(fmt.Errorf("%w: opaque of %d bytes exceeds %d", ErrGarbageReply, n, maxBytes))
		return
	}
	left := int(n+3) &^ 3
	for left > 0 && d.err == nil {
		k := min(left, len(d.scratch))
		d.full(d.scratch[:k])
		left -= k
	}
}

// String reads a string of at most maxBytes (any bytes, not only ASCII).
func (d *Decoder) String(maxBytes uint32) string {
	return string(d.Opaque(maxBytes))
}

func (d *Decoder) skipPad(n int) {
	if r := n & 3; r != 0 {
		pad := d.scratch[:4-r]
		if d.full(pad) {
			for _, b := range pad {
				if b != 0 {
					d.Fail(fmt.Errorf("%w: non-zero padding", ErrGarbageReply))
					return
				}
			}
		}
	}
}
