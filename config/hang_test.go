package config

import (
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"
)

func TestHangHunt(t *testing.T) {
	if os.Getenv("HANG") == "" { t.Skip() }
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	seeds := []string{sampleYAML, "source: &x {<<: *x}\n", "mappings:\n  - &m {table: t, domain: d, events: [{on: insert, type: d.x}]}\n  - <<: *m\n    table: u\n"}
	alphabet := "{}[]&*<:-, \n'\"!#|>~.0aex"
	deadline := time.Now().Add(60 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		b := []byte(seeds[r.Intn(len(seeds))])
		for k := r.Intn(8); k >= 0; k-- {
			i := r.Intn(len(b) + 1)
			switch r.Intn(3) {
			case 0:
				b = append(b[:i], append([]byte{alphabet[r.Intn(len(alphabet))]}, b[i:]...)...)
			case 1:
				if i < len(b) { b = append(b[:i], b[i+1:]...) }
			case 2:
				j := r.Intn(len(b) + 1); if j < i { i, j = j, i }
				b = append(b[:j], append([]byte(string(b[i:j])), b[j:]...)...)
			}
		}
		done := make(chan struct{})
		go func() { c, err := Parse(b, "f", nil); if err == nil { c.Validate() }; close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			os.WriteFile("/tmp/hang.yaml", b, 0o644)
			t.Fatalf("hang after %d on %q", n, strings.ReplaceAll(string(b), "\n", "\\n"))
		}
		n++
	}
	t.Logf("%d runs", n)
}
