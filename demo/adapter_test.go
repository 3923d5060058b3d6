package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// relImport matches a relative import of an ES module: from "./x.js",
// import "./x.js", import("./x.js").
var relImport = regexp.MustCompile(`(?:from|import)\s*\(?\s*["']\./([^"']+)["']`)

// distHash is the fingerprint scripts/build-demo-adapter.sh records in
// realtime.js: index.js of dir and every file it imports by a relative
// path, transitively, sorted by name; each hashed as name, NUL, content,
// NUL. Keep the two in step.
func distHash(dir string) (string, error) {
	seen := map[string][]byte{}
	queue := []string{"index.js"}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if _, ok := seen[f]; ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return "", err
		}
		seen[f] = b
		for _, m := range relImport.FindAllSubmatch(b, -1) {
			queue = append(queue, string(m[1]))
		}
	}
	names := make([]string, 0, len(seen))
	for f := range seen {
		names = append(names, f)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, f := range names {
		h.Write([]byte(f + "\x00"))
		h.Write(seen[f])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var recordedHash = regexp.MustCompile(`(?m)^// dist-sha256: ([0-9a-f]{64})$`)

// TestAdapterUpToDate checks the embedded adapter: one self-contained ES
// module exporting createRealtime, built from the current client/dist.
// client/dist is built by npm and not committed: where it is absent (a
// fresh clone, CI without Node) only the comparison is skipped, and the
// test says so; the checks of the embedded file still run.
func TestAdapterUpToDate(t *testing.T) {
	js, err := fs.ReadFile(staticFiles, "static/realtime.js")
	if err != nil {
		t.Fatalf("demo/static/realtime.js is not embedded (run scripts/build-demo-adapter.sh): %v", err)
	}
	if !bytes.Contains(js, []byte("createRealtime")) || !regexp.MustCompile(`(?m)^export\s*\{`).Match(js) {
		t.Error("realtime.js does not export createRealtime")
	}
	if m := relImport.FindSubmatch(js); m != nil {
		t.Errorf("realtime.js imports ./%s, which the demo does not serve: it must be one bundled file", m[1])
	}
	m := recordedHash.FindSubmatch(js)
	if m == nil {
		t.Fatal("realtime.js has no \"// dist-sha256:\" line: rebuild it with scripts/build-demo-adapter.sh")
	}

	dist := filepath.Join("..", "client", "dist")
	if _, err := os.Stat(filepath.Join(dist, "index.js")); errors.Is(err, fs.ErrNotExist) {
		t.Log("client/dist/index.js is absent (built by `npm run build` in client/, not committed): " +
			"not comparing demo/static/realtime.js with it")
		return
	}
	want, err := distHash(dist)
	if err != nil {
		t.Fatalf("fingerprint client/dist: %v", err)
	}
	if got := string(m[1]); got != want {
		t.Errorf("demo/static/realtime.js was built from another client/dist (dist-sha256 %s, client/dist now %s): "+
			"run scripts/build-demo-adapter.sh and commit demo/static/realtime.js", got, want)
	}
}

// TestDistHash pins the fingerprint's definition on a small tree with a
// chunk imported twice and a file not imported.
func TestDistHash(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("index.js", `import { a } from "./chunk-A.js";`+"\nexport { a };\n")
	write("chunk-A.js", `import "./chunk-B.js"; export const a = 1; import('./chunk-B.js');`)
	write("chunk-B.js", "export {};\n")
	write("react.js", "not part of index\n")
	got, err := distHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, f := range []string{"chunk-A.js", "chunk-B.js", "index.js"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		h.Write([]byte(f + "\x00"))
		h.Write(b)
		h.Write([]byte{0})
	}
	if want := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("distHash = %s, want %s", got, want)
	}
	write("react.js", "changed\n")
	if again, _ := distHash(dir); again != got {
		t.Error("a file index.js does not import changed the hash")
	}
	write("chunk-B.js", "export {}; // changed\n")
	if again, _ := distHash(dir); again == got {
		t.Error("a changed chunk left the hash alone")
	}
}
