package nfsserver

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nascache/nascache/cachefs"
)

// fakeNode is one object of fakeFS.
type fakeNode struct {
	attr     cachefs.Attr
	gen      uint32
	export   uint16
	children map[string]uint64
	data     []byte
	target   string
	verf     [8]byte
}

// fakeFS is an in-memory FS for protocol tests. gate, when set, makes
// GetAttr of gateIno announce itself on entered and wait for release, so
// tests can prove calls overlap without timing.
type fakeFS struct {
	// mu guards every field below.
	mu       sync.Mutex
	nodes    map[uint64]*fakeNode
	next     uint64
	roots    map[uint16]uint64
	lastCred cachefs.Cred
	commits  int

	gateIno uint64
	entered chan struct{}
	release chan struct{}

	// released, when set, makes Read hand out a Release that poisons
	// the data buffer and reports on this channel: data sent after its
	// release would arrive poisoned.
	released chan struct{}
}

var _ FS = (*fakeFS)(nil)

var fakeTime = time.Unix(1700000000, 123456789)

func newFakeFS(exports ...uint16) *fakeFS {
	f := &fakeFS{nodes: make(map[uint64]*fakeNode), next: 100, roots: make(map[uint16]uint64)}
	for _, e := range exports {
		f.roots[e] = f.addLocked(e, cachefs.TypeDirectory, 0o755)
	}
	return f
}

func (f *fakeFS) addLocked(export uint16, t cachefs.FileType, mode uint32) uint64 {
	f.next++
	ino := f.next
	n := &fakeNode{export: export, gen: 1, attr: cachefs.Attr{
		Type: t, Mode: mode, Nlink: 1, FSID: uint64(export) + 1, FileID: ino,
		Atime: fakeTime, Mtime: fakeTime, Ctime: fakeTime,
	}}
	if t == cachefs.TypeDirectory {
		n.children = make(map[string]uint64)
		n.attr.Nlink = 2
	}
	f.nodes[ino] = n
	return ino
}

// add creates name in dir and returns its NodeID (test setup).
func (f *fakeFS) add(dir cachefs.NodeID, name string, t cachefs.FileType, mode uint32) cachefs.NodeID {
	f.mu.Lock()
	defer f.mu.Unlock()
	ino := f.addLocked(dir.Export, t, mode)
	f.nodes[dir.Ino].children[name] = ino
	return cachefs.NodeID{Export: dir.Export, Ino: ino, Gen: 1}
}

func (f *fakeFS) id(ino uint64) cachefs.NodeID {
	n := f.nodes[ino]
	return cachefs.NodeID{Export: n.export, Ino: ino, Gen: n.gen}
}

func (f *fakeFS) getLocked(cred cachefs.Cred, n cachefs.NodeID) (*fakeNode, error) {
	f.lastCred = cred
	x, ok := f.nodes[n.Ino]
	if !ok || x.gen != n.Gen || x.export != n.Export {
		return nil, cachefs.ErrStale
	}
	return x, nil
}

func (f *fakeFS) dirLocked(cred cachefs.Cred, n cachefs.NodeID) (*fakeNode, error) {
	d, err := f.getLocked(cred, n)
	if err != nil {
		return nil, err
	}
	if d.children == nil {
		return nil, cachefs.ErrNotDir
	}
	return d, nil
}

func (f *fakeFS) Root(_ context.Context, export uint16) (cachefs.NodeID, cachefs.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ino, ok := f.roots[export]
	if !ok {
		return cachefs.NodeID{}, cachefs.Attr{}, cachefs.ErrStale
	}
	return f.id(ino), f.nodes[ino].attr, nil
}

func (f *fakeFS) GetAttr(_ context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.Attr, error) {
	f.mu.Lock()
	gated := f.gateIno != 0 && n.Ino == f.gateIno
	entered, release := f.entered, f.release
	f.mu.Unlock()
	if gated {
		entered <- struct{}{}
		<-release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.Attr{}, err
	}
	return x.attr, nil
}

func (f *fakeFS) SetAttr(_ context.Context, cred cachefs.Cred, n cachefs.NodeID, sa cachefs.SetAttr, guard *time.Time) (cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.WCC{}, err
	}
	if guard != nil && !guard.Equal(x.attr.Ctime) {
		return cachefs.WCC{}, cachefs.ErrNotSync
	}
	before := &cachefs.PreAttr{SizeBytes: x.attr.SizeBytes, Mtime: x.attr.Mtime, Ctime: x.attr.Ctime}
	if sa.Mode != nil {
		x.attr.Mode = *sa.Mode
	}
	if sa.UID != nil {
		x.attr.UID = *sa.UID
	}
	if sa.GID != nil {
		x.attr.GID = *sa.GID
	}
	if sa.SizeBytes != nil && *sa.SizeBytes > 1<<30 {
		return cachefs.WCC{}, cachefs.ErrFileTooBig
	}
	if sa.SizeBytes != nil {
		x.data = append(x.data, make([]byte, max(0, int(*sa.SizeBytes)-len(x.data)))...)[:*sa.SizeBytes]
		x.attr.SizeBytes = *sa.SizeBytes
	}
	if sa.Mtime == cachefs.TimeClient {
		x.attr.Mtime = sa.MtimeVal
	}
	a := x.attr
	return cachefs.WCC{Before: before, After: &a}, nil
}

func (f *fakeFS) Lookup(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.NodeID, cachefs.Attr, cachefs.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.dirLocked(cred, dir)
	if err != nil {
		return cachefs.NodeID{}, cachefs.Attr{}, cachefs.Attr{}, err
	}
	ino, ok := d.children[name]
	if !ok {
		return cachefs.NodeID{}, cachefs.Attr{}, d.attr, cachefs.ErrNotExist
	}
	return f.id(ino), f.nodes[ino].attr, d.attr, nil
}

func (f *fakeFS) Access(_ context.Context, cred cachefs.Cred, n cachefs.NodeID, want uint32) (uint32, cachefs.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return 0, cachefs.Attr{}, err
	}
	return want, x.attr, nil
}

func (f *fakeFS) ReadLink(_ context.Context, cred cachefs.Cred, n cachefs.NodeID) (string, cachefs.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return "", cachefs.Attr{}, err
	}
	return x.target, x.attr, nil
}

func (f *fakeFS) Read(_ context.Context, cred cachefs.Cred, n cachefs.NodeID, off uint64, count uint32) (cachefs.ReadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.ReadResult{}, err
	}
	if off >= uint64(len(x.data)) {
		return cachefs.ReadResult{EOF: true, Attr: x.attr}, nil
	}
	end := min(uint64(len(x.data)), off+uint64(count))
	res := cachefs.ReadResult{Data: slices.Clone(x.data[off:end]), EOF: end == uint64(len(x.data)), Attr: x.attr}
	if ch := f.released; ch != nil {
		buf := res.Data
		res.Release = func() {
			for i := range buf {
				buf[i] = 0xee
			}
			ch <- struct{}{}
		}
	}
	return res, nil
}

func (f *fakeFS) Write(_ context.Context, cred cachefs.Cred, n cachefs.NodeID, off uint64, data []byte, stable cachefs.Stability) (cachefs.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.WriteResult{}, err
	}
	if off+uint64(len(data)) > 1<<30 {
		return cachefs.WriteResult{}, cachefs.ErrFileTooBig
	}
	before := &cachefs.PreAttr{SizeBytes: x.attr.SizeBytes, Mtime: x.attr.Mtime, Ctime: x.attr.Ctime}
	if end := off + uint64(len(data)); end > uint64(len(x.data)) {
		x.data = append(x.data, make([]byte, end-uint64(len(x.data)))...)
	}
	copy(x.data[off:], data)
	x.attr.SizeBytes = uint64(len(x.data))
	a := x.attr
	return cachefs.WriteResult{Count: uint32(len(data)), Committed: stable, WCC: cachefs.WCC{Before: before, After: &a}}, nil
}

func (f *fakeFS) Commit(_ context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.WCC{}, err
	}
	f.commits++
	a := x.attr
	return cachefs.WCC{After: &a}, nil
}

func (f *fakeFS) newLocked(cred cachefs.Cred, dir cachefs.NodeID, name string, t cachefs.FileType, mode uint32) (*fakeNode, cachefs.NodeID, cachefs.WCC, error) {
	d, err := f.dirLocked(cred, dir)
	if err != nil {
		return nil, cachefs.NodeID{}, cachefs.WCC{}, err
	}
	if _, ok := d.children[name]; ok {
		a := d.attr
		return nil, cachefs.NodeID{}, cachefs.WCC{After: &a}, cachefs.ErrExist
	}
	ino := f.addLocked(dir.Export, t, mode)
	d.children[name] = ino
	x := f.nodes[ino]
	x.attr.UID, x.attr.GID = cred.UID, cred.GID
	a := d.attr
	return x, f.id(ino), cachefs.WCC{After: &a}, nil
}

func modeOr(sa cachefs.SetAttr, def uint32) uint32 {
	if sa.Mode != nil {
		return *sa.Mode
	}
	return def
}

func (f *fakeFS) Create(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string, args cachefs.CreateArgs) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if args.Mode == cachefs.CreateExclusive {
		if d, err := f.dirLocked(cred, dir); err == nil {
			if ino, ok := d.children[name]; ok && f.nodes[ino].verf == args.Verifier {
				a := d.attr
				return f.id(ino), f.nodes[ino].attr, cachefs.WCC{After: &a}, nil
			}
		}
	}
	x, id, wcc, err := f.newLocked(cred, dir, name, cachefs.TypeRegular, modeOr(args.Attr, 0o644))
	if err != nil {
		return cachefs.NodeID{}, cachefs.Attr{}, wcc, err
	}
	x.verf = args.Verifier
	return id, x.attr, wcc, nil
}

func (f *fakeFS) Mkdir(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string, sa cachefs.SetAttr) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, id, wcc, err := f.newLocked(cred, dir, name, cachefs.TypeDirectory, modeOr(sa, 0o755))
	if err != nil {
		return cachefs.NodeID{}, cachefs.Attr{}, wcc, err
	}
	return id, x.attr, wcc, nil
}

func (f *fakeFS) Symlink(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name, target string, sa cachefs.SetAttr) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, id, wcc, err := f.newLocked(cred, dir, name, cachefs.TypeSymlink, 0o777)
	if err != nil {
		return cachefs.NodeID{}, cachefs.Attr{}, wcc, err
	}
	x.target = target
	return id, x.attr, wcc, nil
}

func (f *fakeFS) Mknod(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string, t cachefs.FileType, sa cachefs.SetAttr, major, minor uint32) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, id, wcc, err := f.newLocked(cred, dir, name, t, modeOr(sa, 0o644))
	if err != nil {
		return cachefs.NodeID{}, cachefs.Attr{}, wcc, err
	}
	x.attr.RdevMajor, x.attr.RdevMinor = major, minor
	return id, x.attr, wcc, nil
}

func (f *fakeFS) unlinkLocked(cred cachefs.Cred, dir cachefs.NodeID, name string, wantDir bool) (cachefs.WCC, error) {
	d, err := f.dirLocked(cred, dir)
	if err != nil {
		return cachefs.WCC{}, err
	}
	a := d.attr
	ino, ok := d.children[name]
	if !ok {
		return cachefs.WCC{After: &a}, cachefs.ErrNotExist
	}
	x := f.nodes[ino]
	switch {
	case wantDir && x.children == nil:
		return cachefs.WCC{After: &a}, cachefs.ErrNotDir
	case wantDir && len(x.children) > 0:
		return cachefs.WCC{After: &a}, cachefs.ErrNotEmpty
	case !wantDir && x.children != nil:
		return cachefs.WCC{After: &a}, cachefs.ErrIsDir
	}
	delete(d.children, name)
	delete(f.nodes, ino)
	return cachefs.WCC{After: &a}, nil
}

func (f *fakeFS) Remove(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unlinkLocked(cred, dir, name, false)
}

func (f *fakeFS) Rmdir(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, name string) (cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unlinkLocked(cred, dir, name, true)
}

func (f *fakeFS) Rename(_ context.Context, cred cachefs.Cred, fromDir cachefs.NodeID, fromName string, toDir cachefs.NodeID, toName string) (cachefs.WCC, cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd, err := f.dirLocked(cred, fromDir)
	if err != nil {
		return cachefs.WCC{}, cachefs.WCC{}, err
	}
	td, err := f.dirLocked(cred, toDir)
	if err != nil {
		return cachefs.WCC{}, cachefs.WCC{}, err
	}
	ino, ok := fd.children[fromName]
	if !ok {
		return cachefs.WCC{}, cachefs.WCC{}, cachefs.ErrNotExist
	}
	delete(fd.children, fromName)
	td.children[toName] = ino
	fa, ta := fd.attr, td.attr
	return cachefs.WCC{After: &fa}, cachefs.WCC{After: &ta}, nil
}

func (f *fakeFS) Link(_ context.Context, cred cachefs.Cred, n cachefs.NodeID, dir cachefs.NodeID, name string) (cachefs.Attr, cachefs.WCC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.Attr{}, cachefs.WCC{}, err
	}
	d, err := f.dirLocked(cred, dir)
	if err != nil {
		return cachefs.Attr{}, cachefs.WCC{}, err
	}
	d.children[name] = n.Ino
	x.attr.Nlink++
	a := d.attr
	return x.attr, cachefs.WCC{After: &a}, nil
}

// fakeVerifier is the cookie verifier of every fakeFS listing.
const fakeVerifier = 0x1122334455667788

func (f *fakeFS) ReadDir(_ context.Context, cred cachefs.Cred, dir cachefs.NodeID, cookie, verifier uint64, fn func(cachefs.DirEntry) bool) (cachefs.ReadDirResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.dirLocked(cred, dir)
	if err != nil {
		return cachefs.ReadDirResult{}, err
	}
	if cookie != 0 && verifier != fakeVerifier {
		return cachefs.ReadDirResult{DirAttr: d.attr}, cachefs.ErrInvalid
	}
	names := make([]string, 0, len(d.children))
	for name := range d.children {
		names = append(names, name)
	}
	slices.Sort(names)
	res := cachefs.ReadDirResult{Verifier: fakeVerifier, DirAttr: d.attr, EOF: true}
	for i := int(cookie); i < len(names); i++ {
		ino := d.children[names[i]]
		if !fn(cachefs.DirEntry{Name: names[i], Cookie: uint64(i + 1), Node: f.id(ino), Attr: f.nodes[ino].attr}) {
			res.EOF = false
			break
		}
	}
	return res, nil
}

func (f *fakeFS) FSStat(_ context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.FSStat, cachefs.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.FSStat{}, cachefs.Attr{}, err
	}
	return cachefs.FSStat{TotalBytes: 1 << 40, FreeBytes: 1 << 39, AvailBytes: 1 << 38, TotalFiles: 1000, FreeFiles: 500, AvailFiles: 400}, x.attr, nil
}

func (f *fakeFS) PathConf(_ context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.PathConf, cachefs.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, err := f.getLocked(cred, n)
	if err != nil {
		return cachefs.PathConf{}, cachefs.Attr{}, err
	}
	return cachefs.PathConf{LinkMax: 32000, NameMax: 255, NoTrunc: true, ChownRestricted: true, CasePreserving: true}, x.attr, nil
}
