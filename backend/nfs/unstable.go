package nfs

import (
	"sync"

	"github.com/nascache/nascache/backend"
)

// unstableSet keeps the data of UNSTABLE writes until COMMIT, so that it
// can be re-sent when the server's write verifier changes.
//
// Lock order: unstableFile.commitMu, then unstableSet.mu, then
// unstableFile.mu. No lock is held across an RPC except commitMu.
type unstableSet struct {
	limitBytes int64
	mu         sync.Mutex // guards files and bytes
	files      map[string]*unstableFile
	bytes      int64 // data kept in all files' ranges (and reserved for writes in flight)
}

type unstableFile struct {
	// commitMu is held shared by every UNSTABLE write to the file while
	// it runs and exclusively by Commit, so that a COMMIT and a re-send
	// never interleave with new writes.
	commitMu sync.RWMutex
	mu       sync.Mutex // guards ranges
	ranges   []unstableRange
}

type unstableRange struct {
	off  uint64
	data []byte
	verf [8]byte
}

func newUnstableSet(limitBytes int64) *unstableSet {
	return &unstableSet{limitBytes: limitBytes, files: make(map[string]*unstableFile)}
}

func (s *unstableSet) file(h backend.Handle) *unstableFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[string(h)]
	if f == nil {
		f = &unstableFile{}
		s.files[string(h)] = f
	}
	return f
}

func (s *unstableSet) lookup(h backend.Handle) *unstableFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[string(h)]
}

// forgetIfEmpty drops f from the set if it holds no data. The caller
// holds f.commitMu exclusively, so no write can be adding to it.
func (s *unstableSet) forgetIfEmpty(h backend.Handle, f *unstableFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ranges) == 0 && s.files[string(h)] == f {
		delete(s.files, string(h))
	}
}

func (s *unstableSet) reserve(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes+n > s.limitBytes {
		return false
	}
	s.bytes += n
	return true
}

func (s *unstableSet) release(n int64) {
	s.mu.Lock()
	s.bytes -= n
	s.mu.Unlock()
}

func (f *unstableFile) add(r unstableRange) {
	f.mu.Lock()
	f.ranges = append(f.ranges, r)
	f.mu.Unlock()
}

// take removes and returns every kept range, oldest first.
func (f *unstableFile) take() []unstableRange {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.ranges
	f.ranges = nil
	return r
}

// restore puts back ranges that could not be re-sent, ahead of any newer.
func (f *unstableFile) restore(rs []unstableRange) {
	f.mu.Lock()
	f.ranges = append(append([]unstableRange(nil), rs...), f.ranges...)
	f.mu.Unlock()
}

func sizeOf(rs []unstableRange) int64 {
	var n int64
	for _, r := range rs {
		n += int64(len(r.data))
	}
	return n
}
