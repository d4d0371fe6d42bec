package cachefs

import (
	"sync"
	"time"

	"github.com/nascache/nascache/backend"
)

// Read streams: one version per burst of READs under ttl.
//
// A client reads a file with several READs (the Linux client sends four
// or more at once, in parallel). Each READ takes the origin version of
// the attributes it validates, so under ttl:D, if the cached attributes
// expire between two READs of one burst, the first is served from the old
// version's chunks and the next revalidates, finds the file rewritten at
// the origin and is served new bytes: the application sees a mix of old
// and new data in one read of the file. (Under strict every READ asks
// the origin, and a mix needs the origin itself to change mid-burst.)
//
// Under ttl the data cache therefore keeps, per inode, the attributes of
// its current read stream:
//
//   - A READ that starts a stream (offset 0, or no READ of the inode in
//     the last streamIdle, or the stream's attributes are D old) takes the
//     cached attributes only if they are younger than D/2, else asks the
//     origin; those attributes become the stream's.
//   - Any other READ of the inode continues the stream and uses the
//     stream's attributes as they are, without looking at the cache.
//
// So a burst of READs shorter than D/2 is always served from one version
// (it starts with attributes younger than D/2 and ends before they are D
// old), READs of a burst that arrive out of order agree too (whichever
// comes first starts the stream, the offset-0 one takes the same young
// attributes), and no READ ever uses attributes older than D: the
// freshness promise of ttl is kept. A fetch that finds the origin at
// another version still fails the READ over to fresh attributes
// (errVersionChanged), and drops the stream.
//
// The table is bounded by streamTrackedFiles; when full it is cleared,
// which only makes the next READs start new streams.

// streamIdle ends a read stream: a READ more than this after the last one
// of its inode starts a new stream.
const streamIdle = time.Second

// streamTrackedFiles bounds the read-stream table.
const streamTrackedFiles = 8192

type stream struct {
	attr  backend.Attr
	asked time.Time // when the origin gave attr
	last  time.Time // the stream's last READ
}

// streams holds the read streams of ttl exports.
type streams struct {
	mu sync.Mutex // guards byIno
	// byIno is the current stream of each inode.
	byIno map[uint64]*stream
}

func newStreams() *streams { return &streams{byIno: make(map[uint64]*stream)} }

// continued returns the attributes of ino's stream if a READ at off at
// now continues it (see above), and records the READ.
func (s *streams) continued(ino, off uint64, now time.Time, ttl time.Duration) (backend.Attr, bool) {
	if off == 0 {
		return backend.Attr{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byIno[ino]
	if st == nil || now.Sub(st.last) > streamIdle || now.Sub(st.asked) >= ttl {
		return backend.Attr{}, false
	}
	st.last = now
	return st.attr, true
}

// start makes a a stream's attributes, given by the origin at asked.
func (s *streams) start(ino uint64, a backend.Attr, asked, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byIno) >= streamTrackedFiles {
		clear(s.byIno)
	}
	s.byIno[ino] = &stream{attr: a, asked: asked, last: now}
}

// drop ends ino's stream (its version is gone, or nascache changed it).
func (s *streams) drop(ino uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byIno, ino)
}
