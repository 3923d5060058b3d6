package docs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/treasure-home/cdc-broadcaster/config"
)

// kubernetesDir holds the Kubernetes manifests, relative to this directory.
const kubernetesDir = "../deploy/kubernetes"

// clusterKeys are the configuration keys the cluster contract
// (shared/spec/cluster.md) adds, which the manifests use before the config
// package has them. Once config.Config knows log.backend, the config
// package is the only judge, and every key here must be one of its keys:
// a key renamed there fails this test until the manifests follow.
var clusterKeys = []string{
	"log.backend",
	"log.nats.urls",
	"log.nats.stream",
	"log.nats.subject_prefix",
	"log.nats.replicas",
	"log.nats.credentials_file",
	"log.nats.user",
	"log.nats.password",
	"log.nats.token",
	"log.nats.tls.ca_file",
	"log.nats.tls.cert_file",
	"log.nats.tls.key_file",
	"log.cache_events",
	"source.failover_timeout",
}

// envVarRE finds the CDC_* variables named in a file's text.
var envVarRE = regexp.MustCompile(`\bCDC_[A-Z0-9_]*[A-Z0-9]`)

// manifest is one YAML document of deploy/kubernetes, decoded loosely.
type manifest struct {
	file string
	doc  map[string]any
}

func (m manifest) kind() string { return str(m.doc["kind"]) }
func (m manifest) name() string { return str(dig(m.doc, "metadata", "name")) }

// loadManifests parses every YAML document under deploy/kubernetes.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	err := filepath.WalkDir(kubernetesDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Errorf("%s: %v", path, err)
				break
			}
			if doc != nil {
				out = append(out, manifest{file: path, doc: doc})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 6 {
		t.Fatalf("%d YAML documents under %s: want the manifests, the kustomizations and the NATS values", len(out), kubernetesDir)
	}
	return out
}

// find returns the one manifest of kind and name outside setup/, the
// nodes' own.
func find(t *testing.T, ms []manifest, kind, name string) manifest {
	t.Helper()
	var found []manifest
	for _, m := range ms {
		if m.kind() == kind && m.name() == name && filepath.Base(filepath.Dir(m.file)) == "kubernetes" {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s %q in %s: want one", len(found), kind, name, kubernetesDir)
	}
	return found[0]
}

// dig follows keys (and list indexes as ints) through decoded YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func labels(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, val := range m {
		out[k] = str(val)
	}
	return out
}

// selects reports whether matchLabels selector picks a pod labelled pod.
func selects(selector, pod map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if pod[k] != v {
			return false
		}
	}
	return true
}

// configKeys returns every key path of config.Config outside the list
// sections (mappings, channels), intermediate ones included, and the map
// keys under which any name is allowed (auth.jwt.claims).
func configKeys() (keys map[string]bool, maps map[string]bool) {
	keys, maps = map[string]bool{}, map[string]bool{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			if !f.IsExported() || tag == "" || tag == "-" || prefix == "" && (tag == "mappings" || tag == "channels") {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			keys[key] = true
			switch f.Type.Kind() {
			case reflect.Struct:
				if f.Type != reflect.TypeFor[time.Duration]() {
					walk(key, f.Type)
				}
			case reflect.Map:
				maps[key] = true
			}
		}
	}
	walk("", reflect.TypeFor[config.Config]())
	return keys, maps
}

// knownKeys is configKeys plus, until the config package has the cluster
// keys, clusterKeys and their parents. It reports whether the config
// package has them (pending false).
func knownKeys(t *testing.T) (known, maps map[string]bool, pending bool) {
	t.Helper()
	known, maps = configKeys()
	if known["log.backend"] {
		var missing []string
		for _, k := range clusterKeys {
			if !known[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			t.Errorf("the config package has log.backend but not %v: the manifests and operations.md use these names; make them agree", missing)
		}
		return known, maps, false
	}
	for _, k := range clusterKeys {
		for p := k; p != ""; p = parent(p) {
			known[p] = true
		}
	}
	return known, maps, true
}

func parent(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// keyKnown reports whether key is a configuration key, or lies under a map
// key.
func keyKnown(key string, known, maps map[string]bool) bool {
	if known[key] {
		return true
	}
	for p := parent(key); p != ""; p = parent(p) {
		if maps[p] {
			return true
		}
	}
	return false
}

// leafKeys lists the key paths of a decoded config file's leaves, outside
// mappings and channels.
func leafKeys(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok {
		*out = append(*out, prefix)
		return
	}
	for k, val := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		} else if k == "mappings" || k == "channels" {
			continue
		}
		leafKeys(key, val, out)
	}
}

// podSpec returns the pod template's spec of a Deployment or Job.
func podSpec(m manifest) any { return dig(m.doc, "spec", "template", "spec") }

// container returns the container named name of a pod spec, or nil.
func container(spec any, list, name string) map[string]any {
	l, _ := dig(spec, list).([]any)
	for _, c := range l {
		if c, ok := c.(map[string]any); ok && str(c["name"]) == name {
			return c
		}
	}
	return nil
}

// envNames returns the names of a container's environment variables.
func envNames(c map[string]any) []string {
	var out []string
	l, _ := c["env"].([]any)
	for _, e := range l {
		out = append(out, str(dig(e, "name")))
	}
	return out
}

func TestKubernetesServe(t *testing.T) {
	ms := loadManifests(t)
	dep := find(t, ms, "Deployment", "cdc-broadcaster")
	spec := podSpec(dep)
	c := container(spec, "containers", "serve")
	if c == nil {
		t.Fatal("Deployment cdc-broadcaster: no container serve")
	}

	if n, _ := dig(dep.doc, "spec", "replicas").(int); n != 3 {
		t.Errorf("replicas %v: want 3", dig(dep.doc, "spec", "replicas"))
	}
	var args []string
	l, _ := c["args"].([]any)
	for _, a := range l {
		args = append(args, str(a))
	}
	if len(args) == 0 || args[0] != "serve" || !slices.Contains(args, "--config") {
		t.Errorf("args %q: want serve --config ...", args)
	}
	if i := slices.Index(args, "--role"); i < 0 || i+1 >= len(args) || args[i+1] != "all" {
		t.Errorf("args %q: want --role all", args)
	}

	port := ""
	ports, _ := c["ports"].([]any)
	for _, p := range ports {
		if dig(p, "containerPort") == 8080 {
			port = str(dig(p, "name"))
		}
	}
	if port == "" {
		t.Errorf("no named containerPort 8080 (server.listen :8080)")
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := str(dig(c, probe, "httpGet", "path")); got != path {
			t.Errorf("%s path %q: want %s", probe, got, path)
		}
		if got := dig(c, probe, "httpGet", "port"); got != port && got != 8080 {
			t.Errorf("%s port %v: want %s", probe, got, port)
		}
	}

	// SIGTERM drains within server.drain_timeout; the pod must be given the
	// preStop sleep plus that, with room to spare.
	grace, _ := dig(spec, "terminationGracePeriodSeconds").(int)
	preStop, _ := dig(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	drain := configMapConfig(t, ms)["server"].(map[string]any)["drain_timeout"]
	d, err := time.ParseDuration(str(drain))
	if err != nil {
		t.Fatalf("server.drain_timeout %v: %v", drain, err)
	}
	if preStop <= 0 || time.Duration(grace)*time.Second < time.Duration(preStop)*time.Second+d+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d, preStop sleep %d s: want the sleep, drain_timeout (%s) and 5 s", grace, preStop, d)
	}

	// GOMEMLIMIT below the memory limit (operations.md, "Sizing").
	if str(dig(c, "resources", "limits", "memory")) != "1200Mi" || envValue(c, "GOMEMLIMIT") != "900MiB" {
		t.Errorf("memory limit %v, GOMEMLIMIT %q: want 1200Mi and 900MiB as in operations.md", dig(c, "resources", "limits", "memory"), envValue(c, "GOMEMLIMIT"))
	}
	if dig(c, "resources", "requests", "cpu") == nil || dig(c, "resources", "requests", "memory") == nil {
		t.Error("no resource requests")
	}

	if dig(spec, "securityContext", "runAsNonRoot") != true || dig(c, "securityContext", "readOnlyRootFilesystem") != true ||
		dig(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation")
	}
	if dig(spec, "affinity", "podAntiAffinity") == nil {
		t.Error("no podAntiAffinity: two nodes could share a machine")
	}

	// The Service and the PodDisruptionBudget pick the Deployment's pods,
	// and the Deployment's own selector does.
	pod := labels(dig(dep.doc, "spec", "template", "metadata", "labels"))
	for _, s := range []struct {
		what     string
		selector any
	}{
		{"Deployment selector", dig(dep.doc, "spec", "selector", "matchLabels")},
		{"Service", dig(find(t, ms, "Service", "cdc-broadcaster").doc, "spec", "selector")},
		{"PodDisruptionBudget", dig(find(t, ms, "PodDisruptionBudget", "cdc-broadcaster").doc, "spec", "selector", "matchLabels")},
		{"podAntiAffinity", dig(spec, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", 0, "labelSelector", "matchLabels")},
	} {
		if !selects(labels(s.selector), pod) {
			t.Errorf("%s %v does not select the pods %v", s.what, s.selector, pod)
		}
	}
	pdb := find(t, ms, "PodDisruptionBudget", "cdc-broadcaster").doc
	if dig(pdb, "spec", "maxUnavailable") != 1 && dig(pdb, "spec", "minAvailable") != 2 {
		t.Errorf("PodDisruptionBudget: want maxUnavailable 1 or minAvailable 2")
	}

	// The ConfigMap and the Secret the pods read exist or are named alike.
	if cm := str(dig(spec, "volumes", 0, "configMap", "name")); cm != find(t, ms, "ConfigMap", "cdc-broadcaster").name() {
		t.Errorf("config volume reads ConfigMap %q", cm)
	}
}

func envValue(c map[string]any, name string) string {
	l, _ := c["env"].([]any)
	for _, e := range l {
		if str(dig(e, "name")) == name {
			return str(dig(e, "value"))
		}
	}
	return ""
}

// configMapConfig returns the config.yaml of the ConfigMap, decoded.
func configMapConfig(t *testing.T, ms []manifest) map[string]any {
	t.Helper()
	raw := str(dig(find(t, ms, "ConfigMap", "cdc-broadcaster").doc, "data", "config.yaml"))
	var c map[string]any
	if err := yaml.Unmarshal([]byte(raw), &c); err != nil || c == nil {
		t.Fatalf("ConfigMap cdc-broadcaster config.yaml: %v", err)
	}
	return c
}

// TestKubernetesConfigKeys: every CDC_* variable the manifests set (and
// every one their comments suggest) and every key of the ConfigMap's
// config.yaml is a configuration key, and the file sets up the cluster.
func TestKubernetesConfigKeys(t *testing.T) {
	ms := loadManifests(t)
	c := configMapConfig(t, ms)
	known, mapKeys, pending := knownKeys(t)
	envKnown := map[string]bool{}
	for k := range known {
		envKnown[config.EnvName(k)] = true
	}

	var vars []string
	for _, m := range ms {
		spec := podSpec(m)
		for _, list := range []string{"containers", "initContainers"} {
			l, _ := dig(spec, list).([]any)
			for _, ct := range l {
				vars = append(vars, envNames(ct.(map[string]any))...)
			}
		}
	}
	// The variables named in comments and in the values file's advice.
	for _, f := range []string{"deployment.yaml", "nats-values.yaml", "README.md"} {
		raw, err := os.ReadFile(filepath.Join(kubernetesDir, f))
		if err != nil {
			t.Fatal(err)
		}
		vars = append(vars, envVarRE.FindAllString(string(raw), -1)...)
	}
	stream := str(digKey(c, "log.nats.stream")) // CDC_EVENTS is a name, not a variable
	slices.Sort(vars)
	checked := 0
	for _, v := range slices.Compact(vars) {
		if !strings.HasPrefix(v, config.EnvPrefix) || v == stream {
			continue
		}
		checked++
		if !envKnown[v] {
			t.Errorf("%s: no configuration key has this variable (CDC_ + the key path in upper case, _ for .)", v)
		}
	}
	if checked < 5 {
		t.Errorf("only %d CDC_ variables found: is the extraction broken?", checked)
	}

	var keys []string
	leafKeys("", c, &keys)
	slices.Sort(keys)
	for _, k := range keys {
		if !keyKnown(k, known, mapKeys) {
			t.Errorf("ConfigMap config.yaml: %s is not a configuration key", k)
		}
	}
	for key, want := range map[string]any{
		"log.backend":       "nats",
		"log.nats.replicas": 3,
		"log.nats.stream":   "CDC_EVENTS",
	} {
		if got := digKey(c, key); got != want {
			t.Errorf("ConfigMap config.yaml: %s = %v, want %v", key, got, want)
		}
	}
	for _, key := range []string{"log.nats.urls", "log.cache_events", "retention.max_events", "retention.max_age"} {
		if digKey(c, key) == nil {
			t.Errorf("ConfigMap config.yaml: %s not set", key)
		}
	}
	if urls, _ := digKey(c, "log.nats.urls").([]any); len(urls) == 0 || !strings.Contains(str(urls[0]), "://nats:4222") {
		t.Errorf("log.nats.urls %v: want the nats chart's Service, nats:4222", digKey(c, "log.nats.urls"))
	}

	// The config package judges the whole file once it has the cluster keys.
	if pending {
		t.Logf("config.Config has no log.backend yet: keys checked against the cluster contract's %d", len(clusterKeys))
		return
	}
	raw := str(dig(find(t, ms, "ConfigMap", "cdc-broadcaster").doc, "data", "config.yaml"))
	env := []string{"CDC_SOURCE_DATABASE_URL=postgres://cdc@db:5432/school", "CDC_AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef"}
	cfg, err := config.Parse([]byte(raw), "configmap.yaml config.yaml", env)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Errorf("ConfigMap config.yaml: %v", err)
	}
}

// digKey follows a dotted key path through a decoded config file.
func digKey(c map[string]any, key string) any {
	var path []any
	for _, p := range strings.Split(key, ".") {
		path = append(path, p)
	}
	return dig(c, path...)
}

// TestKubernetesNATSValues: the nats chart runs three JetStream servers on
// file storage.
func TestKubernetesNATSValues(t *testing.T) {
	var vals map[string]any
	for _, m := range loadManifests(t) {
		if filepath.Base(m.file) == "nats-values.yaml" {
			vals = m.doc
		}
	}
	if vals == nil {
		t.Fatal("no nats-values.yaml")
	}
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"config", "cluster", "enabled"}, true},
		{[]any{"config", "cluster", "replicas"}, 3},
		{[]any{"config", "jetstream", "enabled"}, true},
		{[]any{"config", "jetstream", "fileStore", "enabled"}, true},
		{[]any{"config", "jetstream", "fileStore", "pvc", "enabled"}, true},
		{[]any{"config", "jetstream", "memoryStore", "enabled"}, false},
		{[]any{"config", "monitor", "enabled"}, true},
		{[]any{"podTemplate", "topologySpreadConstraints", "kubernetes.io/hostname", "maxSkew"}, 1},
	} {
		if got := dig(vals, c.path...); got != c.want {
			t.Errorf("nats-values.yaml %v = %v, want %v", c.path, got, c.want)
		}
	}
	if dig(vals, "config", "jetstream", "fileStore", "pvc", "size") == nil {
		t.Error("nats-values.yaml: no JetStream PVC size")
	}
}

// TestKubernetesKustomize: each kustomization lists files that exist, and,
// where kubectl is installed, builds.
func TestKubernetesKustomize(t *testing.T) {
	ms := loadManifests(t)
	dirs := 0
	for _, m := range ms {
		if m.kind() != "Kustomization" {
			continue
		}
		dirs++
		dir := filepath.Dir(m.file)
		res, _ := m.doc["resources"].([]any)
		if len(res) == 0 {
			t.Errorf("%s: no resources", m.file)
		}
		for _, r := range res {
			if _, err := os.Stat(filepath.Join(dir, str(r))); err != nil {
				t.Errorf("%s: resource %v: %v", m.file, r, err)
			}
		}
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Logf("kubectl not found: %s not built", dir)
			continue
		}
		out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize %s: %v\n%s", dir, err, out)
			continue
		}
		var kinds []string
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				break
			}
			kinds = append(kinds, str(doc["kind"]))
			if img := dig(podSpec(manifest{doc: doc}), "containers", 0, "image"); img != nil && !strings.Contains(str(img), "/") {
				t.Errorf("kubectl kustomize %s: image %v not replaced by images:", dir, img)
			}
		}
		t.Logf("kubectl kustomize %s: %v", dir, kinds)
	}
	if dirs != 2 {
		t.Errorf("%d kustomizations: want deploy/kubernetes and its setup/", dirs)
	}
}

// anchorLinkRE finds Markdown links to a heading: [text](file#anchor).
var anchorLinkRE = regexp.MustCompile(`\]\(([^)#\s]*)#([^)\s]+)\)`)

// TestOperationsLinks: the links to headings of operations.md, from itself
// and from deploy/kubernetes/README.md, lead to a heading.
func TestOperationsLinks(t *testing.T) {
	anchors := headingAnchors(t, operationsFile)
	for file, target := range map[string]string{
		operationsFile: "",
		filepath.Join(kubernetesDir, "README.md"): "../../docs/" + operationsFile,
	} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range anchorLinkRE.FindAllStringSubmatch(string(raw), -1) {
			if m[1] != target {
				continue
			}
			n++
			if !anchors[m[2]] {
				t.Errorf("%s: link to %s#%s: no such heading", file, operationsFile, m[2])
			}
		}
		if n == 0 {
			t.Errorf("%s: no links to headings of %s found", file, operationsFile)
		}
	}
}
