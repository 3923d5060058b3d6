package mapping

import (
	"context"
	"io"
	"log/slog"
	"testing"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// BenchmarkMapChange maps a typical UPDATE through the docs/config.md
// mapping: the published rule is evaluated (true), four payload columns,
// four channels, an actor column.
func BenchmarkMapChange(b *testing.B) {
	m, err := New([]config.Mapping{examsMapping()}, schema(), discard{}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	rel := examsRel()
	c := update(rel, broadcaster.OldFull,
		map[string]any{"id": int64(7), "class_id": int64(42), "subject_id": int64(3), "status": "draft", "title": "Algebra", "updated_by": int64(19)},
		map[string]any{"id": int64(7), "class_id": int64(42), "subject_id": int64(3), "status": "published", "title": "Algebra", "updated_by": int64(19)})
	tx := testTx(0x1000)
	ctx := context.Background()
	if err := m.Begin(ctx, tx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Change(ctx, tx, c); err != nil {
			b.Fatal(err)
		}
		if len(m.buf) == cap(m.buf) {
			m.buf = m.buf[:0] // keep the buffer out of the measure
		}
	}
	if err := m.Commit(ctx, tx); err != nil {
		b.Fatal(err)
	}
}
