package oncrpc

import (
	"errors"
	"fmt"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// Sentinels returned by Call. Use errors.Is; IsRetryable tells which ones
// may go away if the same call is made again later.
var (
	// ErrClosed is returned by calls made after, or cut short by, Close.
	ErrClosed = errors.New("oncrpc: client closed")
	// ErrConnLost means the connection carrying the call broke before
	// its reply arrived. The request may or may not have been executed.
	ErrConnLost = errors.New("oncrpc: connection lost")
	// ErrNoConnection means no connection to the server could be made
	// (the server is down or unreachable); the request was not sent.
	ErrNoConnection = errors.New("oncrpc: no connection to server")
	// ErrGarbageReply means a reply could not be decoded.
	ErrGarbageReply = errors.New("oncrpc: malformed reply")
	// ErrReplyTooLarge means a reply record exceeded Config.MaxRecordBytes.
	ErrReplyTooLarge = errors.New("oncrpc: reply record too large")
	// ErrArgsTooLarge means a call's encoded arguments exceed what the
	// record marking standard allows.
	ErrArgsTooLarge = errors.New("oncrpc: call record too large")

	// The server accepted the call but could not run it (accept_stat).
	ErrProgUnavail  = errors.New("oncrpc: program unavailable")
	ErrProgMismatch = errors.New("oncrpc: program version mismatch")
	ErrProcUnavail  = errors.New("oncrpc: procedure unavailable")
	ErrGarbageArgs  = errors.New("oncrpc: server could not decode arguments")
	ErrSystemErr    = errors.New("oncrpc: server system error")

	// The server refused the call (reject_stat).
	ErrRPCMismatch = errors.New("oncrpc: RPC version mismatch")
	ErrAuth        = errors.New("oncrpc: authentication error")
)

// IsRetryable reports whether err may go away if the call is made again
// later: the connection broke, no connection could be made, or the server
// had a transient system error. A retried call may run twice at the server
// when err matches ErrConnLost.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrConnLost) || errors.Is(err, ErrNoConnection) || errors.Is(err, ErrSystemErr)
}

// MismatchError carries the version range a server supports; it matches
// ErrProgMismatch or ErrRPCMismatch.
type MismatchError struct {
	Kind      error // ErrProgMismatch or ErrRPCMismatch
	Low, High uint32
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%v (server supports %d..%d)", e.Kind, e.Low, e.High)
}

func (e *MismatchError) Unwrap() error { return e.Kind }

// AuthError carries the auth_stat of a call the server refused to
// authenticate; it matches ErrAuth.
type AuthError struct {
	Stat rpcv2.AuthStat
}

func (e *AuthError) Error() string {
	name, ok := rpcv2.AuthStat_name[e.Stat]
	if !ok {
		name = fmt.Sprintf("auth_stat %d", int32(e.Stat))
	}
	return fmt.Sprintf("%v: %s", ErrAuth, name)
}

func (e *AuthError) Unwrap() error { return ErrAuth }
