package meta

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestMain fails the package when a test leaves a goroutine of nascache
// code running.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "nascache/nascache/") && !strings.Contains(g, "TestMain") {
				fmt.Fprintf(os.Stderr, "leaked goroutine:\n%s\n", g)
				code = 1
			}
		}
	}
	os.Exit(code)
}
