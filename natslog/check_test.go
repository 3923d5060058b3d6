package natslog

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSubjectsOverlap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"cdc.>", "cdc.exam.*", true},
		{"cdc.>", "other.>", false},
		{"cdc.>", "cdc.>", true},
		{"cdc.>", "cdc", false},
		{"cdc.>", ">", true},
		{"cdc.>", "*", false},
		{"cdc.>", "*.exam", true},
		{"cdc.>", "cdc2.>", false},
		{"cdc.exam.*", "cdc.exam.published", true},
		{"cdc.exam.*", "cdc.user.*", false},
		{"cdc.*", "cdc.exam.created", false},
		{"cdc.*.created", "*.exam.*", true},
		{"cdc", "cdc", true},
		{"cdc", "*", true},
		{"a.b", "a.b.c", false},
		{"school1.cdc.>", "school2.cdc.>", false},
		{"school1.cdc.>", "*.cdc.exam", true},
	}
	for _, tt := range tests {
		if got := SubjectsOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("SubjectsOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := SubjectsOverlap(tt.b, tt.a); got != tt.want {
			t.Errorf("SubjectsOverlap(%q, %q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestSubjectCovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		super, sub string
		want       bool
	}{
		{"cdc.>", "cdc.>", true},
		{">", "cdc.>", true},
		{"*.>", "cdc.>", true},
		{"cdc.>", "cdc.exam.*", true},
		{"cdc.*", "cdc.>", false},
		{"cdc.*.*", "cdc.>", false},
		{"cdc.exam.>", "cdc.>", false},
		{"cdc", "cdc.>", false},
		{"other.>", "cdc.>", false},
		{"cdc.*", "cdc.exam", true},
		{"cdc.exam", "cdc.*", false},
	}
	for _, tt := range tests {
		if got := SubjectCovers(tt.super, tt.sub); got != tt.want {
			t.Errorf("SubjectCovers(%q, %q) = %v, want %v", tt.super, tt.sub, got, tt.want)
		}
	}
}

// TestCheck against a real single server: a missing stream with create
// false is a problem (with create true a note), more replicas than a
// single server can hold are a problem, another stream on overlapping
// subjects is a problem, and an existing stream of ours is fine.
func TestCheck(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	o := Options{URLs: []string{srv.url()}, Stream: "CHK", SubjectPrefix: "chk"}
	nc, js, err := Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	has := func(r CheckResult, key, text string) bool {
		for _, p := range r.Problems {
			if p.Key == key && strings.Contains(p.Msg, text) {
				return true
			}
		}
		return false
	}

	r, err := Check(ctx, js, o)
	if err != nil || len(r.Problems) != 1 || !has(r, "log.nats.stream", "does not exist") || r.Exists {
		t.Fatalf("missing stream, create false: %+v, %v", r, err)
	}
	o.Create = true
	if r, err = Check(ctx, js, o); err != nil || len(r.Problems) != 0 || len(r.Notes) != 1 {
		t.Fatalf("missing stream, create true: %+v, %v", r, err)
	}
	o3 := o
	o3.Replicas = 3
	if r, err = Check(ctx, js, o3); err != nil || !has(r, "log.nats.replicas", "single server") {
		t.Fatalf("R3 on one server: %+v, %v", r, err)
	}

	other := o
	other.Stream, other.SubjectPrefix = "OTHER", "chk.exam"
	if _, err := EnsureStream(ctx, js, other); err != nil {
		t.Fatal(err)
	}
	if r, err = Check(ctx, js, o); err != nil || !has(r, "log.nats.subject_prefix", "OTHER") {
		t.Fatalf("overlapping stream: %+v, %v", r, err)
	}
	if err := js.DeleteStream(ctx, "OTHER"); err != nil {
		t.Fatal(err)
	}

	if _, err := EnsureStream(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	if r, err = Check(ctx, js, o); err != nil || len(r.Problems) != 0 || len(r.Notes) != 0 || !r.Exists {
		t.Fatalf("existing stream: %+v, %v", r, err)
	}
	// Our stream's name, another prefix: the stream would not store.
	moved := o
	moved.SubjectPrefix = "elsewhere"
	if r, err = Check(ctx, js, moved); err != nil || !has(r, "log.nats.subject_prefix", "not elsewhere.>") {
		t.Fatalf("stream on other subjects: %+v, %v", r, err)
	}
}

// TestObservePublish: the writer reports each acknowledged publish.
func TestObservePublish(t *testing.T) {
	srv := startServer(t)
	js, st, o := srv.open(t, "OBS")
	var mu sync.Mutex
	var seen []time.Duration
	o.ObservePublish = func(d time.Duration) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	}
	w, err := NewWriter(context.Background(), js, st, o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(context.Background(), testTx(1, 3, time.Now())); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "three acknowledgements", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 3
	})
	for _, d := range seen {
		if d <= 0 || d > publishTimeout {
			t.Errorf("publish latency %v", d)
		}
	}
}
