package nfs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		err       error
		want      error
		retryable bool
	}{
		{&StatusError{nfsv3.NFS3ERR_NOENT}, backend.ErrNotExist, false},
		{&StatusError{nfsv3.NFS3ERR_EXIST}, backend.ErrExist, false},
		{&StatusError{nfsv3.NFS3ERR_NOTEMPTY}, backend.ErrNotEmpty, false},
		{&StatusError{nfsv3.NFS3ERR_ACCES}, backend.ErrAccess, false},
		{&StatusError{nfsv3.NFS3ERR_STALE}, backend.ErrStale, false},
		{&StatusError{nfsv3.NFS3ERR_BADHANDLE}, backend.ErrBadHandle, false},
		{&StatusError{nfsv3.NFS3ERR_NOT_SYNC}, backend.ErrNotSync, false},
		{&StatusError{nfsv3.NFS3ERR_ROFS}, backend.ErrReadOnly, false},
		{&StatusError{nfsv3.NFS3ERR_JUKEBOX}, backend.ErrUnavailable, true},
		{&StatusError{nfsv3.NFS3ERR_SERVERFAULT}, backend.ErrIO, false},
		{&StatusError{12345}, backend.ErrIO, false},
		{fmt.Errorf("x: %w", oncrpc.ErrConnLost), backend.ErrUnavailable, true},
		{fmt.Errorf("x: %w", oncrpc.ErrNoConnection), backend.ErrUnavailable, true},
		{context.DeadlineExceeded, backend.ErrUnavailable, true},
		{&oncrpc.AuthError{Stat: rpcv2.AUTH_TOOWEAK}, backend.ErrAccess, false},
		{&oncrpc.MismatchError{Kind: oncrpc.ErrProgMismatch, Low: 4, High: 4}, backend.ErrNotSupported, false},
		{oncrpc.ErrProcUnavail, backend.ErrNotSupported, false},
		{oncrpc.ErrGarbageArgs, backend.ErrInvalid, false},
		{oncrpc.ErrGarbageReply, backend.ErrIO, false},
		{oncrpc.ErrClosed, backend.ErrIO, false},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			err := wrap("op", tc.err)
			if !errors.Is(err, tc.want) {
				t.Errorf("%v does not match %v", err, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v lost its cause %v", err, tc.err)
			}
			if backend.IsRetryable(err) != tc.retryable {
				t.Errorf("IsRetryable(%v) = %v", err, !tc.retryable)
			}
		})
	}
}
