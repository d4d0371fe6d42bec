package local

import (
	"errors"
	"syscall"
	"testing"

	"github.com/nascache/nascache/backend"
)

// A local EBUSY is permanent: reported as an I/O error, never as
// retryable (a client would retry a JUKEBOX for ever).
func TestMapErrBusyIsPermanent(t *testing.T) {
	for _, err := range []error{syscall.EBUSY, &pathErr{syscall.EBUSY}} {
		got := mapErr(err)
		if backend.IsRetryable(got) || !errors.Is(got, backend.ErrIO) {
			t.Errorf("mapErr(%v) = %v: want permanent ErrIO", err, got)
		}
	}
	if got := mapErr(syscall.EAGAIN); !backend.IsRetryable(got) {
		t.Errorf("mapErr(EAGAIN) = %v: want retryable", got)
	}
}

type pathErr struct{ err error }

func (e *pathErr) Error() string { return "rmdir x: " + e.err.Error() }
func (e *pathErr) Unwrap() error { return e.err }
