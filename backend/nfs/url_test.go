package nfs

import (
	"errors"
	"testing"
)

func TestParseURL(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		in   string
		want Target
	}{
		{"nfs://nas/export", Target{Host: "nas", PortmapPort: 111, Export: "/export"}},
		{"nfs://10.0.0.5:2049/srv/data?mountport=20048", Target{Host: "10.0.0.5", Port: 2049, MountPort: 20048, PortmapPort: 111, Export: "/srv/data"}},
		{"nfs://[fd00::1]:2049/a/b?uid=1000&gid=100&conns=4&privport=true&portmapport=1111",
			Target{Host: "fd00::1", Port: 2049, PortmapPort: 1111, Export: "/a/b", UID: 1000, GID: 100, Conns: 4, PrivPort: &yes}},
		{"nfs://[fd00::1]/x?privport=0&version=3", Target{Host: "fd00::1", PortmapPort: 111, Export: "/x", PrivPort: &no}},
		{"nfs://nas/", Target{Host: "nas", PortmapPort: 111, Export: "/"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !sameTarget(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			// Round trip through the canonical form.
			again, err := ParseURL(got.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", got.String(), err)
			}
			if !sameTarget(again, got) {
				t.Fatalf("round trip %q: got %+v, want %+v", got.String(), again, got)
			}
		})
	}
}

func sameTarget(a, b Target) bool {
	pa, pb := a.PrivPort, b.PrivPort
	a.PrivPort, b.PrivPort = nil, nil
	if (pa == nil) != (pb == nil) || (pa != nil && *pa != *pb) {
		return false
	}
	return a == b
}

func TestParseURLErrors(t *testing.T) {
	for _, in := range []string{
		"", "file:///srv", "nfs:///export", "nfs://nas", "nfs://nas/a/../b", "nfs://nas:0/x", "nfs://nas:70000/x",
		"nfs://nas/x?mountport=abc", "nfs://nas/x?uid=-1", "nfs://nas/x?uid=4294967296", "nfs://nas/x?conns=0",
		"nfs://nas/x?privport=maybe", "nfs://nas/x?version=4", "nfs://nas/x?colour=blue", "nfs://nas/x?uid=1&uid=2",
		"nfs://user@nas/x", "nfs://nas/x#frag", "nfs:opaque",
	} {
		if _, err := ParseURL(in); !errors.Is(err, ErrBadURL) {
			t.Errorf("ParseURL(%q) = %v, want ErrBadURL", in, err)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"nfs://nas/export", "nfs://[fd00::1]:2049/a/b?uid=1000&gid=100&conns=4&privport=true", "nfs://h:1/x?mountport=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseURL(s)
		if err != nil {
			return
		}
		again, err := ParseURL(tg.String())
		if err != nil || !sameTarget(again, tg) {
			t.Fatalf("%q -> %q: %+v, %v", s, tg.String(), again, err)
		}
	})
}
