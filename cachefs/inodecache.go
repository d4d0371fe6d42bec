package cachefs

import (
	"container/list"
	"sync"

	"github.com/nascache/nascache/meta"
)

// inodeCache is a bounded LRU of inode records in front of meta, so that
// the hot path (GETATTR of a known inode) does not open a bolt
// transaction. meta stays the truth: every change to a record goes to meta
// first and then replaces the cached copy.
type inodeCache struct {
	max int

	mu    sync.Mutex // guards byIno and lru
	byIno map[uint64]*list.Element
	lru   *list.List // of meta.Inode, most recent at the front
}

func newInodeCache(max int) *inodeCache {
	return &inodeCache{max: max, byIno: make(map[uint64]*list.Element), lru: list.New()}
}

func (c *inodeCache) get(ino uint64) (meta.Inode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byIno[ino]
	if !ok {
		return meta.Inode{}, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(meta.Inode), true
}

func (c *inodeCache) put(in meta.Inode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byIno[in.Ino]; ok {
		e.Value = in
		c.lru.MoveToFront(e)
		return
	}
	c.byIno[in.Ino] = c.lru.PushFront(in)
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(meta.Inode)
		delete(c.byIno, old.Ino)
	}
}

func (c *inodeCache) drop(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byIno[ino]; ok {
		c.lru.Remove(e)
		delete(c.byIno, ino)
	}
}

func (c *inodeCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byIno = make(map[uint64]*list.Element)
	c.lru.Init()
}
