package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestNodeID(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	for listen, port := range map[string]string{":8080": "8080", "127.0.0.1:9000": "9000", "[::1]:7000": "7000"} {
		got := nodeID(listen)
		if !strings.HasSuffix(got, ":"+port) || (host != "" && !strings.HasPrefix(got, host)) {
			t.Errorf("nodeID(%q) = %q, want %s:%s", listen, got, host, port)
		}
	}
}

func TestReaderStateSince(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 11, 29, 10, 0, 0, 0, time.UTC)
	r := readerState{state: "off", since: t0}
	if s, since := r.set("leader", t0.Add(time.Second)); s != "leader" || !since.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a change: %s since %v", s, since)
	}
	if s, since := r.set("leader", t0.Add(time.Minute)); s != "leader" || !since.Equal(t0.Add(time.Second)) {
		t.Fatalf("the same state again moved since: %s since %v", s, since)
	}
}
