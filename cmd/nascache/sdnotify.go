package main

import (
	"fmt"
	"net"
)

// sdNotify sends state (e.g. "READY=1") to the systemd notification socket
// named by socket, the value of $NOTIFY_SOCKET. It implements the
// sd_notify(3) datagram protocol: one unixgram datagram per message. A name
// starting with '@' is an abstract socket (Go's net package maps the '@' to
// the leading NUL byte). An empty socket means "not run by systemd" and
// sends nothing; sent reports whether a message went out.
func sdNotify(socket, state string) (sent bool, err error) {
	if socket == "" {
		return false, nil
	}
	if socket[0] != '/' && socket[0] != '@' {
		return false, fmt.Errorf("sd_notify %q: NOTIFY_SOCKET is neither a path nor an abstract name", socket)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify %q: %w", state, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify %q to %s: %w", state, socket, err)
	}
	return true, nil
}
