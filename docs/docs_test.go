// Package docs holds the operator documentation and the checks that keep
// its machine-readable parts true: the Grafana dashboard
// (grafana-dashboard.json) and the Prometheus alerting rules (alerts.yaml)
// name only metrics and labels the service registers, parse, and (with
// promtool) fire when they should; every runbook link leads to a heading
// of operations.md; metrics.md documents every metric; the Kubernetes
// manifests of deploy/kubernetes parse and agree with each other and with
// the configuration keys (kubernetes_test.go).
//
// The package has tests only. `promtool` is needed for the rule checks:
// scripts/test-deps.sh installs it; without it these tests fail under CI
// (CI=true) and are skipped elsewhere.
package docs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/treasure-home/cdc-broadcaster/metrics"
)

// Files under test, relative to this directory.
const (
	dashboardFile  = "grafana-dashboard.json"
	alertsFile     = "alerts.yaml"
	alertTestsFile = "testdata/alerts_test.yaml"
	operationsFile = "operations.md"
	metricsDocFile = "metrics.md"
)

// registered returns the metric families the metrics package registers when
// every source is wired and every optional figure is known, with each
// family's label names.
func registered(t *testing.T) map[string][]string {
	t.Helper()
	now := time.Date(2025, 11, 29, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	safe := int64(1 << 30)
	mon, err := metrics.NewSlotMonitor(metrics.SlotMonitorOptions{
		Slot: "cdc",
		DB: slotRow{
			server: "0/2000", exists: true, active: true, walStatus: "reserved",
			confirmed: "0/1800", retained: 150, safe: &safe,
		},
		Now: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{
		Now:     clock,
		Version: "test",
		Sources: metrics.Sources{
			Stream: func() metrics.StreamStatus {
				return metrics.StreamStatus{
					Connected: true, CaughtUp: true, Slot: "cdc",
					ReceivedLSN: 0x1F00, ConfirmedLSN: 0x1800,
					LastCommit: now.Add(-3 * time.Second), Reconnects: 1,
				}
			},
			Gateway: func() metrics.GatewayStats {
				return metrics.GatewayStats{
					ConnectionsActive: 1, ConnectionsOpened: 1,
					ActiveByRole:      map[string]int64{"admin": 1},
					OpenedByRole:      map[string]uint64{"admin": 1},
					ClosesByCode:      map[int]uint64{1000: 1},
					SyncRequests:      map[string]uint64{"events": 1},
					SubscribeRefusals: map[string]uint64{"forbidden": 1},
				}
			},
			ACL:         func() metrics.ACLStats { return metrics.ACLStats{Granted: 1} },
			Log:         func() metrics.LogStats { return metrics.LogStats{Events: 1, Oldest: now.Add(-time.Minute)} },
			Events:      func() map[string]uint64 { return map[string]uint64{"user.created": 1} },
			EmitDropped: func() map[string]uint64 { return map[string]uint64{"channel": 1} },
			Slot:        mon,
			Node: func() metrics.NodeStatus {
				return metrics.NodeStatus{ID: "node-a:8080", Role: "all", Reader: metrics.ReaderLeader, ReaderSince: now}
			},
			Publisher: func() metrics.PublisherStats { return metrics.PublisherStats{Published: 1} },
			Follower:  func() metrics.FollowerStats { return metrics.FollowerStats{Following: true} },
		},
	})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, metrics.Namespace+"_") {
			continue
		}
		labels := []string{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		if mf.GetType().String() == "HISTOGRAM" {
			labels = append(labels, "le") // on the _bucket series
		}
		out[name] = labels
	}
	if len(out) < 40 {
		t.Fatalf("only %d cdc_broadcaster_ families registered: %v", len(out), keys(out))
	}
	return out
}

// slotRow is a SlotQuerier whose one row is fixed: the slot monitor's
// query answered without a database.
type slotRow struct {
	server, walStatus, confirmed string
	exists, active               bool
	retained                     int64
	safe                         *int64
}

func (r slotRow) QueryRow(context.Context, string, ...any) pgx.Row { return r }

// Scan fills the monitor's destinations in the order of its query.
func (r slotRow) Scan(dest ...any) error {
	if len(dest) != 7 {
		return fmt.Errorf("slot query scans %d columns; this fake knows 7", len(dest))
	}
	*dest[0].(**string) = &r.server
	*dest[1].(*bool) = r.exists
	*dest[2].(*bool) = r.active
	*dest[3].(*string) = r.walStatus
	*dest[4].(**string) = &r.confirmed
	*dest[5].(**int64) = &r.retained
	*dest[6].(**int64) = r.safe
	return nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- Grafana dashboard ------------------------------------------------------

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Datasource json.RawMessage `json:"datasource"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens the panels of collapsed rows into the list.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs lists the PromQL of every panel target and variable.
func dashboardExprs(d dashboard) []string {
	var out []string
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		out = append(out, v.Definition)
	}
	return out
}

const promDS = `{"type":"prometheus","uid":"${DS_PROMETHEUS}"}`

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: want both", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a current dashboard (≥ 36)", d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v; want the one Prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	sameDS := func(raw json.RawMessage) bool {
		var a, b any
		return json.Unmarshal(raw, &a) == nil && json.Unmarshal([]byte(promDS), &b) == nil && fmt.Sprint(a) == fmt.Sprint(b)
	}
	for _, v := range d.Templating.List {
		if !sameDS(v.Datasource) || v.Definition == "" {
			t.Errorf("variable %s: datasource %s, definition %q; want %s and a query", v.Name, v.Datasource, v.Definition, promDS)
		}
	}
	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var graphs int
	for _, p := range allPanels(d.Panels) {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		t.Run(fmt.Sprintf("%d_%s", p.ID, p.Title), func(t *testing.T) {
			if p.ID <= 0 {
				t.Errorf("%s: no id", name)
			} else if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: id also used by %s", name, other)
			}
			ids[p.ID] = name
			if p.Type == "" || p.Title == "" {
				t.Errorf("%s: type %q, title %q: want both", name, p.Type, p.Title)
			}
			g := p.GridPos
			if g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Fatalf("%s: gridPos %+v: want a box within the 24 columns", name, g)
			}
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := taken[cell{x, y}]; ok {
						t.Fatalf("%s overlaps %s at (%d,%d)", name, other, x, y)
					}
					taken[cell{x, y}] = name
				}
			}
			if p.Type == "row" {
				return
			}
			graphs++
			if !sameDS(p.Datasource) {
				t.Errorf("%s: datasource %s; want %s", name, p.Datasource, promDS)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", name)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: target %q refId %q: want an expr and a unique refId", name, tg.Expr, tg.RefID)
				}
				refs[tg.RefID] = true
				if !sameDS(tg.Datasource) {
					t.Errorf("%s: target %s datasource %s; want %s", name, tg.RefID, tg.Datasource, promDS)
				}
			}
		})
	}
	if graphs < 20 {
		t.Errorf("%d panels with queries; want the dashboard to cover the metrics (≥ 20)", graphs)
	}
}

// TestDashboardCoversMetrics: the topics the dashboard promises each have
// a panel showing their metric.
func TestDashboardCoversMetrics(t *testing.T) {
	used := map[string]bool{}
	for _, e := range dashboardExprs(loadDashboard(t)) {
		for _, m := range metricNameRE.FindAllString(e, -1) {
			used[baseName(m)] = true
		}
	}
	var missing []string
	for name := range registered(t) {
		switch name {
		case "cdc_broadcaster_build_info":
			continue // a label, not a figure
		}
		if !used[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics no panel shows: %v", missing)
	}
}

// --- Alert rules ------------------------------------------------------------

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlerts(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return f
}

var forRE = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func TestAlertsStructure(t *testing.T) {
	f := loadAlerts(t)
	if len(f.Groups) == 0 {
		t.Fatal("no groups")
	}
	names := map[string]bool{}
	n := 0
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: want a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			n++
			t.Run(r.Alert, func(t *testing.T) {
				if r.Alert == "" || names[r.Alert] {
					t.Errorf("alert name %q: want a unique name", r.Alert)
				}
				names[r.Alert] = true
				if strings.TrimSpace(r.Expr) == "" {
					t.Error("no expr")
				}
				if !forRE.MatchString(r.For) {
					t.Errorf("for %q: want a duration", r.For)
				}
				if s := r.Labels["severity"]; s != "critical" && s != "warning" {
					t.Errorf("labels.severity %q: want critical or warning", s)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("annotations.%s missing", a)
					}
				}
			})
		}
	}
	for _, want := range []string{
		"CDCReplicationDisconnected", "CDCReplicationLagHigh", "CDCReplicationLagBytesHigh",
		"CDCSlotWALRetainedHigh", "CDCSlotLost", "CDCSlowConsumerClosesHigh", "CDCAuthFailuresHigh",
		"CDCSyncClientErrors",
	} {
		if !names[want] {
			t.Errorf("no alert %s", want)
		}
	}
	t.Logf("%d alerting rules", n)
}

// headingSlug is GitHub's anchor for a Markdown heading: lower case, spaces
// to hyphens, punctuation other than - and _ dropped.
func headingSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// headingAnchors returns the anchors of a Markdown file's headings.
func headingAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(line, "#") {
			anchors[headingSlug(strings.TrimLeft(line, "#"))] = true
		}
	}
	return anchors
}

// TestRunbookLinks: every runbook_url of alerts.yaml leads to a heading of
// operations.md.
func TestRunbookLinks(t *testing.T) {
	anchors := headingAnchors(t, operationsFile)
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			file, anchor, ok := strings.Cut(r.Annotations["runbook_url"], "#")
			if !ok || file != "docs/"+operationsFile || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q: want docs/%s#<a heading>; headings: %v", r.Alert, r.Annotations["runbook_url"], operationsFile, keys(anchors))
			}
		}
	}
}

// --- Metric names and labels in PromQL ---------------------------------------

var (
	metricNameRE = regexp.MustCompile(`cdc_broadcaster_[a-z_]+`)
	// A selector's label matchers, and a by/without clause.
	selectorRE = regexp.MustCompile(`(cdc_broadcaster_[a-z_]+)\s*\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// baseName strips the series suffixes of a histogram.
func baseName(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok && strings.HasSuffix(b, "_seconds") {
			return b
		}
	}
	return name
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// TestPromQLNamesExist: every cdc_broadcaster_ metric the dashboard and the
// alerts query is registered by the metrics package, and every label they
// match or group by is one of its labels (or a target label).
func TestPromQLNamesExist(t *testing.T) {
	reg := registered(t)
	sources := map[string][]string{"dashboard": dashboardExprs(loadDashboard(t))}
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			sources["alert "+r.Alert] = append(sources["alert "+r.Alert], r.Expr)
		}
	}
	used := 0
	for where, exprs := range sources {
		for _, e := range exprs {
			names := metricNameRE.FindAllString(e, -1)
			allowed := slices.Clone(targetLabels)
			for _, n := range names {
				labels, ok := reg[baseName(n)]
				if !ok {
					t.Errorf("%s: %q: metric %s is not registered (known: %v)", where, e, n, keys(reg))
					continue
				}
				used++
				allowed = append(allowed, labels...)
			}
			for _, m := range selectorRE.FindAllStringSubmatch(e, -1) {
				own := append(slices.Clone(targetLabels), reg[baseName(m[1])]...)
				for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
					if !slices.Contains(own, lm[1]) {
						t.Errorf("%s: %q: %s has no label %q (it has %v)", where, e, m[1], lm[1], own)
					}
				}
			}
			if len(names) == 0 {
				continue // process_* and go_* queries
			}
			for _, g := range groupingRE.FindAllStringSubmatch(e, -1) {
				for _, l := range strings.Split(g[1], ",") {
					if l = strings.TrimSpace(l); l != "" && !slices.Contains(allowed, l) {
						t.Errorf("%s: %q: groups by %q, a label none of its metrics has (%v)", where, e, l, allowed)
					}
				}
			}
		}
	}
	if used < 40 {
		t.Errorf("only %d metric references found: is the extraction broken?", used)
	}
}

// TestMetricsDocumented: metrics.md lists every registered metric, and
// names none that is not.
func TestMetricsDocumented(t *testing.T) {
	raw, err := os.ReadFile(metricsDocFile)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, n := range metricNameRE.FindAllString(string(raw), -1) {
		documented[baseName(n)] = true
	}
	reg := registered(t)
	for name := range reg {
		if !documented[name] {
			t.Errorf("%s: registered, not in %s", name, metricsDocFile)
		}
	}
	for name := range documented {
		if _, ok := reg[name]; !ok {
			t.Errorf("%s: in %s, not registered", name, metricsDocFile)
		}
	}
}

// --- promtool -----------------------------------------------------------------

// promtool returns the path of promtool. Without it the test fails under
// CI and is skipped elsewhere.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/promtool"); err == nil {
		return "/usr/bin/promtool"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("promtool not found: scripts/test-deps.sh installs it (Debian package prometheus)")
	}
	t.Skip("promtool not found; run scripts/test-deps.sh to install it")
	return ""
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), bytes.TrimSpace(out))
}

func TestAlertRulesCheck(t *testing.T) {
	runPromtool(t, ".", "check", "rules", alertsFile)
}

// TestAlertRulesFire runs the unit tests of testdata/alerts_test.yaml
// against alerts.yaml without its annotations (the cases check when each
// alert fires and its labels, not its wording).
func TestAlertRulesFire(t *testing.T) {
	promtool(t)
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, g := range doc["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			delete(r.(map[string]any), "annotations")
		}
	}
	stripped, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"alerts.yaml": stripped, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runPromtool(t, dir, "test", "rules", "alerts_test.yaml")
}

// TestDashboardQueriesParse has promtool parse every dashboard query, as
// recording rules with Grafana's variables filled in.
func TestDashboardQueriesParse(t *testing.T) {
	promtool(t)
	fill := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$instance", ".*")
	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []recording
	for i, e := range dashboardExprs(loadDashboard(t)) {
		if strings.HasPrefix(e, "label_values(") {
			continue // a Grafana function, not PromQL
		}
		rules = append(rules, recording{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: fill.Replace(e)})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard.rules.yaml")
}

// Compile-time check that the fake answers what SlotMonitor asks.
var _ metrics.SlotQuerier = slotRow{}
