package nfs

import (
	"time"

	"github.com/rs/zerolog"
)

// Options tune an Origin. The zero value of any field means its default
// (DefaultOptions); URL query keys of the same meaning win over them.
type Options struct {
	// Conns is the number of TCP connections to the NFS port (default 2).
	Conns int
	// PrivilegedPort binds source ports below 1024, for servers that
	// require it (default false).
	PrivilegedPort bool
	// MachineName goes into AUTH_SYS credentials (default "nascache").
	MachineName string
	// DialTimeout bounds one connection attempt (default 5s).
	DialTimeout time.Duration
	// MaxIOBytes caps the size of one READ or WRITE below the server's
	// rtmax/wtmax (default 1 MiB).
	MaxIOBytes uint32
	// RetryFor is how long one call keeps retrying NFS3ERR_JUKEBOX and,
	// for idempotent procedures, lost connections, before returning an
	// error matching backend.ErrUnavailable (default 2s; bounded by ctx).
	RetryFor time.Duration
	// CallTimeout bounds one call to the server, retries included: a
	// server that does not answer in time yields an error matching
	// backend.ErrUnavailable (NFS3ERR_JUKEBOX to nascache's clients, which
	// retry), well before a kernel NFS client gives up (default 5s;
	// bounded by ctx).
	CallTimeout time.Duration
	// MountRetryMax bounds the wait between mount attempts of an Origin
	// made by Open, and between reconnects to a server that went away
	// (default 2s).
	MountRetryMax time.Duration
	// OnError, if set, sees every error a call to the server ends with
	// (after retries) and every failed background mount attempt, with
	// the operation's name. It must not block (a metrics counter).
	OnError func(op string, err error)
	// RetryBackoffMin and RetryBackoffMax bound the waits between those
	// retries (default 20ms and 500ms).
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration
	// UnstableLimitBytes bounds the UNSTABLE write data kept (across all
	// files) until COMMIT so that it can be re-sent if the server
	// reboots; past it, writes are sent FILE_SYNC (default 64 MiB).
	UnstableLimitBytes int64
	// ReaddirMaxBytes is the maxcount of one READDIRPLUS (default 128 KiB).
	ReaddirMaxBytes uint32
	// MaxConcurrency is reported in Properties (default 32 per connection).
	MaxConcurrency int
	// Logger receives connection state changes.
	Logger zerolog.Logger
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Conns:              2,
		MachineName:        "nascache",
		DialTimeout:        5 * time.Second,
		MaxIOBytes:         1 << 20,
		RetryFor:           2 * time.Second,
		CallTimeout:        5 * time.Second,
		MountRetryMax:      2 * time.Second,
		RetryBackoffMin:    20 * time.Millisecond,
		RetryBackoffMax:    500 * time.Millisecond,
		UnstableLimitBytes: 64 << 20,
		ReaddirMaxBytes:    128 << 10,
		Logger:             zerolog.Nop(),
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Conns <= 0 {
		o.Conns = d.Conns
	}
	if o.MachineName == "" {
		o.MachineName = d.MachineName
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = d.DialTimeout
	}
	if o.MaxIOBytes == 0 {
		o.MaxIOBytes = d.MaxIOBytes
	}
	o.MaxIOBytes = min(max(o.MaxIOBytes, 4096), 4<<20)
	if o.RetryFor <= 0 {
		o.RetryFor = d.RetryFor
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = d.CallTimeout
	}
	if o.MountRetryMax <= 0 {
		o.MountRetryMax = d.MountRetryMax
	}
	if o.RetryBackoffMin <= 0 {
		o.RetryBackoffMin = d.RetryBackoffMin
	}
	if o.RetryBackoffMax < o.RetryBackoffMin {
		o.RetryBackoffMax = max(d.RetryBackoffMax, o.RetryBackoffMin)
	}
	if o.UnstableLimitBytes <= 0 {
		o.UnstableLimitBytes = d.UnstableLimitBytes
	}
	if o.ReaddirMaxBytes == 0 {
		o.ReaddirMaxBytes = d.ReaddirMaxBytes
	}
	o.ReaddirMaxBytes = min(max(o.ReaddirMaxBytes, 4096), 1<<20)
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 32 * o.Conns
	}
	return o
}
