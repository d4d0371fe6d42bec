package chunkstore

// fifo is an intrusive doubly linked queue of entries with a byte total.
// New entries go in at the front; eviction looks at the back. It is not
// safe for concurrent use: Store.mu guards every fifo.
type fifo struct {
	id    queueID
	head  *entry // front: most recently inserted
	tail  *entry // back: next candidate for eviction
	len   int
	bytes int64
}

// queueID says which queue an entry is in.
type queueID uint8

const (
	queueNone   queueID = iota // not ready, or being removed
	queueSmall                 // S3-FIFO probation queue
	queueMain                  // S3-FIFO main queue
	queuePinned                // pinned: never evicted
)

func (q *fifo) pushFront(e *entry) {
	if e.queue != queueNone {
		panic("chunkstore: entry pushed while still queued")
	}
	e.queue = q.id
	e.prev = nil
	e.next = q.head
	if q.head != nil {
		q.head.prev = e
	} else {
		q.tail = e
	}
	q.head = e
	q.len++
	q.bytes += e.charge
}

func (q *fifo) remove(e *entry) {
	if e.queue != q.id {
		panic("chunkstore: entry removed from a queue it is not in")
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.prev, e.next = nil, nil
	e.queue = queueNone
	q.len--
	q.bytes -= e.charge
}

// ghost remembers the hashes of the last n keys evicted from the small
// queue, so that a key that comes back soon after goes straight to main.
// A ring of hashes plus a count per hash; false positives of the 64-bit
// hash only promote a chunk early, which is harmless.
type ghost struct {
	ring  []uint64
	next  int
	full  bool
	count map[uint64]int32
}

func newGhost(n int) *ghost {
	return &ghost{ring: make([]uint64, n), count: make(map[uint64]int32, n)}
}

func (g *ghost) add(h uint64) {
	if g.full {
		old := g.ring[g.next]
		if c := g.count[old]; c <= 1 {
			delete(g.count, old)
		} else {
			g.count[old] = c - 1
		}
	}
	g.ring[g.next] = h
	g.count[h]++
	g.next++
	if g.next == len(g.ring) {
		g.next, g.full = 0, true
	}
}

func (g *ghost) contains(h uint64) bool { return g.count[h] > 0 }
