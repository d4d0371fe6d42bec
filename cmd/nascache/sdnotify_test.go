package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// listenNotify opens a unixgram socket like systemd's notification socket.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func recvNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSdNotify(t *testing.T) {
	tests := []struct {
		name   string
		socket func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{"abstract", func(t *testing.T) string { return fmt.Sprintf("@nascache-test-%d-%s", os.Getpid(), t.Name()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.socket(t)
			conn := listenNotify(t, name)
			for _, state := range []string{"READY=1", "STOPPING=1"} {
				sent, err := sdNotify(name, state)
				if err != nil || !sent {
					t.Fatalf("sdNotify(%q) = %v, %v", state, sent, err)
				}
				if got := recvNotify(t, conn); got != state {
					t.Errorf("received %q, want %q", got, state)
				}
			}
		})
	}
}

func TestSdNotifyNoSocket(t *testing.T) {
	if sent, err := sdNotify("", "READY=1"); sent || err != nil {
		t.Errorf("sdNotify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
	if _, err := sdNotify("relative", "READY=1"); err == nil {
		t.Error("sdNotify to a relative name succeeded")
	}
	if _, err := sdNotify(filepath.Join(t.TempDir(), "nobody-listens"), "READY=1"); err == nil {
		t.Error("sdNotify to a missing socket succeeded")
	}
}
