package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		json          bool // output is one JSON object per line
		logged        bool // an info line comes out
		wantErr       bool
	}{
		{level: "info", format: "auto", json: true, logged: true}, // not a terminal
		{level: "info", format: "json", json: true, logged: true},
		{level: "debug", format: "console", logged: true},
		{level: "warn", format: "json", json: true},
		{level: "loud", format: "json", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := newLogger(&buf, tt.level, tt.format)
			if (err != nil) != tt.wantErr {
				t.Fatalf("newLogger: %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			l.Info().Str("k", "v").Msg("hello")
			out := buf.String()
			if !tt.logged {
				if out != "" {
					t.Errorf("info logged at level %s: %q", tt.level, out)
				}
				return
			}
			var m map[string]any
			isJSON := json.Unmarshal([]byte(out), &m) == nil
			if isJSON != tt.json || !strings.Contains(out, "hello") {
				t.Errorf("output %q: JSON %v, want %v", out, isJSON, tt.json)
			}
			if isJSON && (m["k"] != "v" || m["level"] != "info" || m["time"] == nil) {
				t.Errorf("JSON line lacks fields: %v", m)
			}
		})
	}
}
