package nfsserver

import (
	"math"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/nascache/nascache/cachefs"
)

// toNfstime converts t to nfstime3, clamping to what 32 unsigned bits of
// seconds can hold (1970 .. 2106). The zero time becomes 0.
func toNfstime(t time.Time) nfsv3.Nfstime3 {
	if t.IsZero() {
		return nfsv3.Nfstime3{}
	}
	s := t.Unix()
	switch {
	case s < 0:
		return nfsv3.Nfstime3{}
	case s > math.MaxUint32:
		return nfsv3.Nfstime3{Seconds: math.MaxUint32, Nseconds: 999999999}
	}
	return nfsv3.Nfstime3{Seconds: uint32(s), Nseconds: uint32(t.Nanosecond())}
}

func fromNfstime(t nfsv3.Nfstime3) time.Time {
	ns := int64(t.Nseconds)
	if ns > 999999999 {
		ns = 999999999
	}
	return time.Unix(int64(t.Seconds), ns)
}

// toFattr converts attributes to fattr3, exactly: all 12 mode bits, the
// nascache inode number as fileid and the export's fsid.
func toFattr(a *cachefs.Attr) nfsv3.Fattr3 {
	return nfsv3.Fattr3{
		Type:   nfsv3.Ftype3(a.Type),
		Mode:   a.Mode & 07777,
		Nlink:  a.Nlink,
		Uid:    a.UID,
		Gid:    a.GID,
		Size:   a.SizeBytes,
		Used:   a.UsedBytes,
		Rdev:   nfsv3.Specdata3{Specdata1: a.RdevMajor, Specdata2: a.RdevMinor},
		Fsid:   a.FSID,
		Fileid: a.FileID,
		Atime:  toNfstime(a.Atime),
		Mtime:  toNfstime(a.Mtime),
		Ctime:  toNfstime(a.Ctime),
	}
}

func postOpAttr(a *cachefs.Attr) nfsv3.PostOpAttr {
	if a == nil {
		return &nfsv3.PostOpAttr_FALSE{}
	}
	return &nfsv3.PostOpAttr_TRUE{Attributes: toFattr(a)}
}

// attrIf returns the post-op attributes a when ok (the call that produced
// them succeeded), else none.
func attrIf(a cachefs.Attr, err error) nfsv3.PostOpAttr {
	if err != nil {
		return &nfsv3.PostOpAttr_FALSE{}
	}
	return postOpAttr(&a)
}

func wccData(w cachefs.WCC) nfsv3.WccData {
	d := nfsv3.WccData{Before: &nfsv3.PreOpAttr_FALSE{}, After: postOpAttr(w.After)}
	if b := w.Before; b != nil {
		d.Before = &nfsv3.PreOpAttr_TRUE{Attributes: nfsv3.WccAttr{
			Size:  b.SizeBytes,
			Mtime: toNfstime(b.Mtime),
			Ctime: toNfstime(b.Ctime),
		}}
	}
	return d
}

func noWcc() nfsv3.WccData {
	return nfsv3.WccData{Before: &nfsv3.PreOpAttr_FALSE{}, After: &nfsv3.PostOpAttr_FALSE{}}
}

// fromSattr converts sattr3 to the FS's SetAttr.
func fromSattr(s *nfsv3.Sattr3) cachefs.SetAttr {
	var sa cachefs.SetAttr
	if m, ok := s.Mode.(*nfsv3.SetMode3_TRUE); ok {
		v := m.Mode & 07777
		sa.Mode = &v
	}
	if u, ok := s.Uid.(*nfsv3.SetUid3_TRUE); ok {
		v := u.Uid
		sa.UID = &v
	}
	if g, ok := s.Gid.(*nfsv3.SetGid3_TRUE); ok {
		v := g.Gid
		sa.GID = &v
	}
	if z, ok := s.Size.(*nfsv3.SetSize3_TRUE); ok {
		v := z.Size
		sa.SizeBytes = &v
	}
	switch t := s.Atime.(type) {
	case *nfsv3.SetAtime_SET_TO_CLIENT_TIME:
		sa.Atime, sa.AtimeVal = cachefs.TimeClient, fromNfstime(t.Atime)
	case *nfsv3.SetAtime_default:
		if t.SetIt == nfsv3.SET_TO_SERVER_TIME {
			sa.Atime = cachefs.TimeServer
		}
	}
	switch t := s.Mtime.(type) {
	case *nfsv3.SetMtime_SET_TO_CLIENT_TIME:
		sa.Mtime, sa.MtimeVal = cachefs.TimeClient, fromNfstime(t.Mtime)
	case *nfsv3.SetMtime_default:
		if t.SetIt == nfsv3.SET_TO_SERVER_TIME {
			sa.Mtime = cachefs.TimeServer
		}
	}
	return sa
}

func toStableHow(s cachefs.Stability) nfsv3.StableHow {
	switch s {
	case cachefs.DataSync:
		return nfsv3.DATA_SYNC
	case cachefs.FileSync:
		return nfsv3.FILE_SYNC
	}
	return nfsv3.UNSTABLE
}

func fromStableHow(s nfsv3.StableHow) (cachefs.Stability, bool) {
	switch s {
	case nfsv3.UNSTABLE:
		return cachefs.Unstable, true
	case nfsv3.DATA_SYNC:
		return cachefs.DataSync, true
	case nfsv3.FILE_SYNC:
		return cachefs.FileSync, true
	}
	return 0, false
}
