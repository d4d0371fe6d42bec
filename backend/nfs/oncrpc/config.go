package oncrpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
)

// DialFunc opens one transport connection to the server.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Config configures a Client. Start from DefaultConfig.
type Config struct {
	// Addr is the server's host:port. Ignored when Dial is set.
	Addr string
	// Conns is how many TCP connections the client keeps; calls go to
	// the one with the fewest calls outstanding.
	Conns int
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// PrivilegedPort binds the local end of every connection to a port
	// below 1024 (needs CAP_NET_BIND_SERVICE), for servers that insist
	// on one ("secure" exports).
	PrivilegedPort bool
	// MachineName goes into AUTH_SYS credentials (at most 255 bytes).
	MachineName string
	// MaxRecordBytes bounds one reply record; a larger reply fails its
	// call with ErrReplyTooLarge and the connection is re-made.
	MaxRecordBytes int64
	// BackoffMin and BackoffMax bound the delay between failed
	// connection attempts (doubling, with jitter). The first attempt
	// after a working connection broke is made at once.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// StallTimeout bounds writing a batch of requests (at most about
	// 1 MiB, plus one request), and reading the rest of a reply once its
	// first bytes came, before the connection is declared broken.
	// Waiting for a reply to start is bounded only by each call's ctx,
	// Request.Deadline and SilentTimeout.
	StallTimeout time.Duration
	// SilentTimeout declares a connection dead when a call has waited
	// this long and nothing at all has come from the server since the
	// call was sent (a server that vanished without closing the
	// connection); the connection is then re-made. 0 disables it.
	SilentTimeout time.Duration
	// ReadBufferBytes is the size of each connection's read buffer:
	// what one read takes in while small items (a READDIRPLUS page's
	// entries) are being decoded. Large opaque data (READ) bypasses it.
	ReadBufferBytes int
	// Dial, if set, replaces TCP dialing (tests use it).
	Dial DialFunc
	// Logger receives connection state changes.
	Logger zerolog.Logger
}

// DefaultConfig returns a Config for addr with sensible defaults.
func DefaultConfig(addr string) Config {
	return Config{
		Addr:            addr,
		Conns:           2,
		DialTimeout:     5 * time.Second,
		MachineName:     "nascache",
		MaxRecordBytes:  8<<20 + 64<<10,
		BackoffMin:      100 * time.Millisecond,
		BackoffMax:      5 * time.Second,
		StallTimeout:    30 * time.Second,
		SilentTimeout:   60 * time.Second,
		ReadBufferBytes: 64 << 10,
		Logger:          zerolog.Nop(),
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" && c.Dial == nil {
		errs = append(errs, errors.New("addr: empty and no Dial function"))
	}
	if c.Conns < 1 || c.Conns > 64 {
		errs = append(errs, fmt.Errorf("conns: %d not in 1..64", c.Conns))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial_timeout: %v must be positive", c.DialTimeout))
	}
	if len(c.MachineName) > 255 {
		errs = append(errs, fmt.Errorf("machine_name: %d bytes, at most 255", len(c.MachineName)))
	}
	if c.MaxRecordBytes < 1024 || c.MaxRecordBytes > maxFragmentLen {
		errs = append(errs, fmt.Errorf("max_record_bytes: %d not in 1024..%d", c.MaxRecordBytes, maxFragmentLen))
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("backoff: min %v must be positive and at most max %v", c.BackoffMin, c.BackoffMax))
	}
	if c.StallTimeout < 0 {
		errs = append(errs, fmt.Errorf("stall_timeout: %v is negative", c.StallTimeout))
	}
	if c.SilentTimeout < 0 {
		errs = append(errs, fmt.Errorf("silent_timeout: %v is negative", c.SilentTimeout))
	}
	if c.ReadBufferBytes < 4096 {
		errs = append(errs, fmt.Errorf("read_buffer_bytes: %d, at least 4096", c.ReadBufferBytes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("oncrpc config: %w", errors.Join(errs...))
	}
	return nil
}
