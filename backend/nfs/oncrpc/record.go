package oncrpc

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Record marking (RFC 5531 section 11): on a stream transport every RPC
// message is a record made of one or more fragments, each preceded by a
// 4-byte big-endian header whose top bit marks the last fragment and whose
// low 31 bits give the fragment's length.
//
//	+--+-----------------+-----------...-+--+----------------+------...-+
//	|0 | length L1 (31b) | L1 bytes      |1 | length L2 (31b) | L2 bytes |
//	+--+-----------------+-----------...-+--+----------------+------...-+
//	  ^ not last                           ^ last fragment
const (
	lastFragment   = 1 << 31
	maxFragmentLen = lastFragment - 1
)

// recordReader reads the body of one record across its fragments. Its
// first error (a read error from the connection, a framing violation or a
// record over the size limit) sticks in err: after it the stream can no
// longer be trusted and the connection must be dropped.
type recordReader struct {
	br       *readBuffer
	maxBytes int64
	left     int64 // bytes left in the current fragment
	last     bool  // the current fragment is the record's last
	total    int64 // bytes of the record's fragments seen so far
	err      error
	hdr      [4]byte
}

// begin reads the first fragment header of the next record. It blocks
// until the server sends one.
func (rr *recordReader) begin() error {
	rr.total, rr.left, rr.last, rr.err = 0, 0, false, nil
	return rr.nextFragment()
}

func (rr *recordReader) nextFragment() error {
	if _, err := io.ReadFull(rr.br, rr.hdr[:]); err != nil {
		rr.err = err
		return err
	}
	h := binary.BigEndian.Uint32(rr.hdr[:])
	rr.last = h&lastFragment != 0
	rr.left = int64(h & maxFragmentLen)
	rr.total += rr.left
	if rr.total > rr.maxBytes {
		rr.err = fmt.Errorf("%w: more than %d bytes", ErrReplyTooLarge, rr.maxBytes)
		return rr.err
	}
	return nil
}

// Read reads record body bytes; io.EOF marks the end of the record. A
// large p is filled straight from the connection by readBuffer, without
// passing through its buffer.
func (rr *recordReader) Read(p []byte) (int, error) {
	if rr.err != nil {
		return 0, rr.err
	}
	for rr.left == 0 {
		if rr.last {
			return 0, io.EOF
		}
		if err := rr.nextFragment(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > rr.left {
		p = p[:rr.left]
	}
	n, err := rr.br.ReadExpect(p, int(min(rr.left, 1<<30)))
	rr.left -= int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		rr.err = err
	}
	return n, err
}

// drain discards the rest of the record.
func (rr *recordReader) drain() error {
	for rr.err == nil {
		if rr.left > 0 {
			n, err := rr.br.Discard(int(min(rr.left, 1<<30)))
			rr.left -= int64(n)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				rr.err = err
			}
			continue
		}
		if rr.last {
			return nil
		}
		if err := rr.nextFragment(); err != nil {
			return err
		}
	}
	return rr.err
}
