package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the name of every environment variable that overrides a
// key: CDC_ + the key path upper-cased with "_" for "." (CDC_AUTH_JWT_SECRET).
const EnvPrefix = "CDC_"

// maxNodes bounds how many YAML nodes one Parse looks at, aliases expanded,
// so that an alias bomb is refused instead of eating the machine.
const maxNodes = 200_000

// defaults holds the value of every key that has one (docs/config.md).
var defaults = map[string]any{
	"source.slot":             "cdc_broadcaster",
	"source.publication":      "cdc_broadcaster",
	"source.create":           true,
	"source.heartbeat":        30 * time.Second,
	"source.status_interval":  10 * time.Second,
	"source.failover_timeout": 10 * time.Second,

	"server.listen":        ":8080",
	"server.drain_timeout": 10 * time.Second,

	"auth.jwt.algorithms":      []string{"HS256"},
	"auth.jwt.leeway":          30 * time.Second,
	"auth.jwt.claims":          map[string]string{"user_id": "sub", "role": "role"},
	"auth.admin_roles":         []string{"admin", "super_admin"},
	"auth.acl_cache_ttl":       60 * time.Second,
	"retention.max_events":     100000,
	"retention.max_age":        15 * time.Minute,
	"retention.max_held_bytes": int64(64 << 20),

	"limits.max_connections_per_ip_per_minute": 60,
	"limits.max_connections_per_user":          10,
	"limits.max_subscriptions_per_connection":  200,
	"limits.max_frame_bytes":                   65536,
	"limits.max_messages_per_second":           50,
	"limits.send_queue":                        1024,
	"source.max_retained_wal":                  int64(1 << 30),
	"limits.stall_timeout":                     5 * time.Second,
	"limits.max_sync_polls_per_user":           4,
	"limits.max_sync_polls_per_ip":             100,

	"audit.log":               "stdout",
	"log.level":               "info",
	"log.format":              "json",
	"log.backend":             BackendMemory,
	"log.nats.urls":           []string{"nats://127.0.0.1:4222"},
	"log.nats.stream":         "CDC_EVENTS",
	"log.nats.subject_prefix": "cdc",
	"log.nats.replicas":       3,
	"log.cache_events":        100000,
}

// listSections are the top-level keys holding lists of structs. They are
// decoded straight from the YAML rather than through viper, because viper
// lower-cases every map key, which would turn a channel param "userId" or a
// claim "schoolId" into "userid". They cannot be set from the environment.
var listSections = map[string]bool{"mappings": true, "channels": true}

// Error is one problem with the configuration: which key, where it was set
// and why it is refused.
type Error struct {
	File string // the config file, "" when unknown or when set by the environment
	Line int    // 1-based line in File, 0 when unknown
	Key  string // key path such as mappings[2].events[0].when; "" for the whole file
	Msg  string // what is wrong
}

// Error reads like "config.yaml:12: mappings[2].events[0].when: <reason>".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found at once, in the order of the file.
type Errors []*Error

// Error puts one problem on each line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// positions says where each key path of a parsed Config was set.
type positions struct {
	lines map[string]int    // key path → line of the key (or list item) in the file
	env   map[string]string // key path → environment variable that set it
}

// With backend nats, the retention (the stream's limits) when not set.
const (
	NATSDefaultMaxEvents = 10_000_000
	NATSDefaultMaxAge    = 168 * time.Hour
)

// set reports whether key was set, in the file or the environment.
func (p *positions) set(key string) bool {
	if p == nil {
		return false
	}
	_, inFile := p.lines[key]
	_, inEnv := p.env[key]
	return inFile || inEnv
}

// at builds an Error for key, pointing at the environment variable or the
// line that set it, or else at the nearest enclosing key that was set.
func (p *positions) at(file, key, format string, args ...any) *Error {
	e := &Error{File: file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if p == nil {
		return e
	}
	for k := key; k != ""; k = parentKey(k) {
		if name, ok := p.env[k]; ok {
			e.File = ""
			e.Msg += " (set by " + name + ")"
			return e
		}
		if line, ok := p.lines[k]; ok {
			e.Line = line
			break
		}
	}
	return e
}

// parentKey strips the last ".name" or "[i]" from a key path.
func parentKey(k string) string {
	if strings.HasSuffix(k, "]") {
		if i := strings.LastIndexByte(k, '['); i >= 0 {
			return k[:i]
		}
	}
	if i := strings.LastIndexByte(k, '.'); i >= 0 {
		return k[:i]
	}
	return ""
}

// Load reads the YAML file at path, applies defaults and CDC_* environment
// overrides from the process environment, and decodes it. It does not
// validate; see Validate and LoadAndValidate. Problems with the file's
// content come back as Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path, os.Environ())
}

// LoadAndValidate is Load followed by Validate.
func LoadAndValidate(path string) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes the YAML in data as Load does, naming it name in errors, with
// env ("KEY=value" entries, as from os.Environ) as the only environment it
// looks at. Every unknown key, wrong type and bad duration is reported, as
// Errors, with its key and line. Parse never panics.
func Parse(data []byte, name string, env []string) (*Config, error) {
	pos := &positions{lines: map[string]int{}, env: map[string]string{}}
	root, err := readNode(data)
	if err != nil {
		return nil, yamlErrors(name, err)
	}

	w := &walker{lines: pos.lines, budget: maxNodes}
	w.document(root)
	overrides, envErrs := fromEnv(env, pos)
	errs := append(w.errs, envErrs...)
	if len(errs) > 0 {
		for _, e := range errs {
			if e.File == "" && e.Line > 0 {
				e.File = name
			}
		}
		return nil, errs
	}

	// yaml.v3 decoding refuses some things its parser takes (excessive
	// aliasing); those are YAML problems too.
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, yamlErrors(name, err)
	}
	c, err := decode(data, raw, overrides)
	if err != nil {
		// The walk above accepts only what decode can take; reaching here
		// means the two disagree, still an error rather than a panic.
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	c.File = name
	c.pos = pos
	if c.Log.Backend == BackendNATS {
		// The stream is the durable log: its limits are the retention,
		// larger by default than the memory log's.
		if !pos.set("retention.max_events") {
			c.Retention.MaxEvents = NATSDefaultMaxEvents
		}
		if !pos.set("retention.max_age") {
			c.Retention.MaxAge = NATSDefaultMaxAge
		}
	}
	for i := range c.Channels {
		for k, re := range c.Channels[i].Params {
			c.Channels[i].Params[k] = anchor(re)
		}
	}
	return c, nil
}

// readNode parses data into a node tree, refusing a second document, which
// would otherwise be ignored.
func readNode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{}, nil // empty file
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return &root, nil
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("line %d: a second YAML document is not allowed (one file holds one config)", max(next.Line, 1))
	}
}

// yamlLine matches yaml.v3's "line N: message".
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrors turns a yaml.v3 error into Errors, with lines where it gives them.
func yamlErrors(file string, err error) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var errs Errors
	for _, m := range msgs {
		e := &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = "invalid YAML: " + sm[2]
		}
		errs = append(errs, e)
	}
	return errs
}

// decode reads data through viper, with defaults and the environment
// overrides, into a Config; the list sections come from raw, the same YAML
// decoded without viper.
func decode(data []byte, raw map[string]any, overrides map[string]any) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for k, d := range defaults {
		if m, ok := d.(map[string]string); ok {
			// As map[string]any viper merges the file's entries over the
			// default ones instead of replacing the whole map.
			am := make(map[string]any, len(m))
			for mk, mv := range m {
				am[mk] = mv
			}
			d = am
		}
		v.SetDefault(k, d)
	}
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("read yaml: %w", err)
	}
	// Viper would read the process environment itself (AutomaticEnv); the
	// environment is applied from the explicit list instead so that Parse
	// is hermetic. Set is viper's highest priority, as env is meant to be.
	for k, val := range overrides {
		v.Set(k, val)
	}
	hook := mapstructure.StringToTimeDurationHookFunc()
	c := new(Config)
	if err := v.Unmarshal(c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = hook
	}); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}

	c.Mappings, c.Channels = nil, nil
	for _, s := range []struct {
		key string
		out any
	}{{"mappings", &c.Mappings}, {"channels", &c.Channels}} {
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			Result:           s.out,
			ErrorUnused:      true,
			WeaklyTypedInput: true, // an unquoted number in a string field
			DecodeHook:       hook,
		})
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", s.key, err)
		}
		if err := dec.Decode(raw[s.key]); err != nil {
			return nil, fmt.Errorf("decode %s: %w", s.key, err)
		}
	}
	return c, nil
}

// leaf is a key that the environment can set.
type leaf struct {
	key string
	typ reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// envLeaves lists every scalar (or scalar list) key of Config outside the
// list sections, plus the default entries of maps such as auth.jwt.claims.
func envLeaves() []leaf {
	var out []leaf
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			if !f.IsExported() || tag == "" || tag == "-" || (prefix == "" && listSections[tag]) {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(key, f.Type)
			case f.Type.Kind() == reflect.Map:
				if m, ok := defaults[key].(map[string]string); ok {
					for k := range m {
						out = append(out, leaf{key + "." + k, f.Type.Elem()})
					}
				}
			default:
				out = append(out, leaf{key, f.Type})
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return out
}

// EnvName is the environment variable that overrides key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// fromEnv picks the overrides for known keys out of env, typed, recording
// in pos which variable set which key. An empty value counts as unset.
func fromEnv(env []string, pos *positions) (map[string]any, Errors) {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v
		}
	}
	out := map[string]any{}
	var errs Errors
	for _, l := range envLeaves() {
		name := EnvName(l.key)
		s, ok := vars[name]
		if !ok || s == "" {
			continue
		}
		val, err := parseEnv(s, l.typ)
		if err != nil {
			errs = append(errs, &Error{Key: l.key, Msg: fmt.Sprintf("%s: %v", name, err)})
			continue
		}
		out[l.key] = val
		pos.env[l.key] = name
	}
	return out, errs
}

// parseEnv converts an environment value to the type of its key.
func parseEnv(s string, t reflect.Type) (any, error) {
	switch {
	case t == durationType:
		if s == "0" {
			return time.Duration(0), nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (want e.g. \"30s\")", s)
		}
		return d, nil
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("expected a boolean, found %q", s)
		}
		return b, nil
	case t.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("expected an integer, found %q", s)
		}
		return n, nil
	case t.Kind() == reflect.Slice:
		var list []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		return list, nil
	default:
		return s, nil
	}
}

// anchor makes a param regexp match the whole param value.
func anchor(re string) string {
	if strings.HasPrefix(re, "^") && strings.HasSuffix(re, "$") &&
		!strings.HasSuffix(re, `\$`) && !strings.Contains(re, "|") {
		return re
	}
	return "^(?:" + re + ")$"
}

// walker checks a YAML node tree against the shape of Config before it is
// decoded, so that every unknown key, wrong type and bad duration is found
// at once, each with its key path and line. It records the line of every
// key it sees.
type walker struct {
	lines   map[string]int
	errs    Errors
	budget  int                 // nodes left to look at
	merging map[*yaml.Node]bool // mappings being merged (<<), to stop cycles
}

func (w *walker) fail(key string, line int, format string, args ...any) {
	w.errs = append(w.errs, &Error{Key: key, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// document checks the whole file, which must be a mapping (or empty).
func (w *walker) document(root *yaml.Node) {
	if root.Kind == 0 {
		return // empty file
	}
	n := root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	n = w.deref(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		w.fail("", n.Line, "expected a mapping of keys at the top level, found %s", describe(n))
		return
	}
	w.walk("", n, reflect.TypeFor[Config](), true)
}

// deref follows aliases, counting the node against the budget; nil when the
// budget is spent.
func (w *walker) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			return nil
		}
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	w.budget--
	if w.budget == 0 {
		w.fail("", 0, "document too large, or too many aliases (over %d nodes)", maxNodes)
	}
	if w.budget < 0 {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// walk checks n, found at key, against t. A null value is accepted (the key
// is then unset); callers refuse it where it makes no sense. viperKeys is
// true outside the list sections, where viper lower-cases map keys.
func (w *walker) walk(key string, n *yaml.Node, t reflect.Type, viperKeys bool) {
	if isNull(n) {
		return
	}
	switch {
	case t == durationType:
		w.duration(key, n)
	case t.Kind() == reflect.String:
		w.str(key, n)
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.fail(key, n.Line, "expected a boolean (true or false), found %s", describe(n))
		}
	case t.Kind() == reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			w.fail(key, n.Line, "expected an integer, found %s", describe(n))
		}
	case t.Kind() == reflect.Slice:
		w.list(key, n, t.Elem(), viperKeys)
	case t.Kind() == reflect.Map:
		for _, p := range w.pairs(key, n) {
			child := key + "." + p.key.Value
			if viperKeys && !lowerName.MatchString(p.key.Value) {
				w.fail(child, p.key.Line, "invalid key: use lower-case letters, digits and _")
				continue
			}
			if isNull(p.value) {
				w.fail(child, p.value.Line, "expected %s, found null", kindName(t.Elem()))
				continue
			}
			w.walk(child, p.value, t.Elem(), viperKeys)
		}
	case t.Kind() == reflect.Struct:
		w.fields(key, n, t, viperKeys)
	}
}

var (
	lowerName     = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	decimalString = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
)

// str accepts a string, or an unquoted decimal integer, which reads back
// the same as text.
func (w *walker) str(key string, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str":
			return
		case "!!int":
			if decimalString.MatchString(n.Value) {
				return
			}
		}
		w.fail(key, n.Line, "expected a string, found %s (quote it to make it a string)", describe(n))
		return
	}
	w.fail(key, n.Line, "expected a string, found %s", describe(n))
}

// duration accepts Go duration text ("30s", "1h30m") or a bare 0.
func (w *walker) duration(key string, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str":
			if _, err := time.ParseDuration(n.Value); err != nil {
				w.fail(key, n.Line, "invalid duration %q (want a number with a unit, e.g. \"500ms\", \"30s\", \"5m\")", clip(n.Value))
			}
			return
		case "!!int":
			var i int64
			if n.Decode(&i) == nil && i == 0 {
				return
			}
			w.fail(key, n.Line, "invalid duration %s: a unit is needed, e.g. \"%ss\"", clip(n.Value), clip(n.Value))
			return
		}
	}
	w.fail(key, n.Line, "expected a duration such as \"30s\", found %s", describe(n))
}

// list checks a sequence whose items are of type elem.
func (w *walker) list(key string, n *yaml.Node, elem reflect.Type, viperKeys bool) {
	if n.Kind != yaml.SequenceNode {
		w.fail(key, n.Line, "expected a list, found %s", describe(n))
		return
	}
	for i, item := range n.Content {
		child := fmt.Sprintf("%s[%d]", key, i)
		w.lines[child] = item.Line
		line := item.Line
		if item = w.deref(item); item == nil {
			return
		}
		if isNull(item) {
			w.fail(child, line, "expected %s, found null", kindName(elem))
			continue
		}
		w.walk(child, item, elem, viperKeys)
	}
}

// fields checks a mapping against the fields of struct type t.
func (w *walker) fields(key string, n *yaml.Node, t reflect.Type, viperKeys bool) {
	byTag := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("mapstructure"); f.IsExported() && tag != "" && tag != "-" {
			byTag[tag] = f
		}
	}
	for _, p := range w.pairs(key, n) {
		child := joinKey(key, p.key.Value)
		f, ok := byTag[p.key.Value]
		if !ok {
			w.fail(child, p.key.Line, "unknown key%s", suggest(p.key.Value, byTag))
			continue
		}
		w.walk(child, p.value, f.Type, viperKeys && !(key == "" && listSections[p.key.Value]))
	}
}

// pair is one key and value of a mapping.
type pair struct{ key, value *yaml.Node }

// pairs returns the entries of mapping n, merge keys (<<) resolved, after
// refusing non-string and duplicate keys. It records each key's line.
func (w *walker) pairs(key string, n *yaml.Node) []pair {
	out := w.entries(key, n)
	for _, p := range out {
		w.lines[joinKey(key, p.key.Value)] = p.key.Line
	}
	return out
}

// entries is pairs without recording lines; merged entries come after the
// mapping's own and never replace them.
func (w *walker) entries(key string, n *yaml.Node) []pair {
	if n.Kind != yaml.MappingNode {
		w.fail(key, n.Line, "expected a mapping, found %s", describe(n))
		return nil
	}
	var out []pair
	seen := map[string]int{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := w.deref(n.Content[i]), n.Content[i+1]
		if k == nil {
			return out
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.fail(key, k.Line, "expected a string key, found %s", describe(k))
			continue
		}
		if k.ShortTag() != "!!str" {
			w.fail(joinKey(key, clip(k.Value)), k.Line, "expected a string key, found %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(joinKey(key, k.Value), k.Line, "duplicate key, first at line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		if v = w.deref(v); v == nil {
			return out
		}
		out = append(out, pair{k, v})
	}
	for _, m := range merged {
		for _, src := range w.mergeSources(m) {
			if w.merging[src] {
				w.fail(key, src.Line, "a merge (<<) includes itself")
				continue
			}
			if w.merging == nil {
				w.merging = map[*yaml.Node]bool{}
			}
			w.merging[src] = true
			for _, p := range w.entries(key, src) {
				if _, dup := seen[p.key.Value]; !dup {
					seen[p.key.Value] = p.key.Line
					out = append(out, p)
				}
			}
			delete(w.merging, src)
		}
	}
	return out
}

// mergeSources returns the mappings a merge key's value names: one mapping
// or a list of them.
func (w *walker) mergeSources(v *yaml.Node) []*yaml.Node {
	if v = w.deref(v); v == nil {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return []*yaml.Node{v}
	}
	var out []*yaml.Node
	for _, item := range v.Content {
		if item = w.deref(item); item != nil {
			out = append(out, item)
		}
	}
	return out
}

func joinKey(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

// kindName says what a value of type t looks like in YAML.
func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "a boolean"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Slice:
		return "a list"
	default:
		return "a mapping"
	}
}

// describe says what a YAML node is, for "expected X, found Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", clip(n.Value))
		case "!!int":
			return "integer " + clip(n.Value)
		case "!!float":
			return "number " + clip(n.Value)
		case "!!bool":
			return "boolean " + clip(n.Value)
		case "!!timestamp":
			return "timestamp " + clip(n.Value)
		default:
			return fmt.Sprintf("%s %q", clip(tag), clip(n.Value))
		}
	}
	return "nothing"
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	return string(r[:max]) + "…"
}

// suggest names the known key nearest to an unknown one, if any is close.
func suggest(name string, known map[string]reflect.StructField) string {
	best, bestD := "", 3
	for k := range known {
		if d := distance(strings.ToLower(name), k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b, capped for long
// input.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Validation.

var (
	pgIdent       = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	domainName    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	eventType     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$`)
	templateName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	ruleOps       = map[string]bool{"insert": true, "update": true, "delete": true, "truncate": true}
	jwtAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"}
	logLevels     = map[string]bool{"debug": true, "info": true, "warn": true, "error": true}
	logFormats    = map[string]bool{"json": true, "text": true}
)

// validator gathers the problems Validate finds.
type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) fail(key, format string, args ...any) {
	v.errs = append(v.errs, v.c.pos.at(v.c.File, key, format, args...))
}

// Validate checks what can be checked without a database: required keys,
// names, event rules, channel templates and patterns, token algorithms and
// their keys, and ranges. It reports every problem at once as Errors, with
// key and line where known, or returns nil. Whether mapped tables and
// columns exist is checked later against the live schema.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.source()
	v.server()
	v.auth()
	v.ranges()
	v.logs()
	v.mappings()
	v.channels()
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

func (v *validator) source() {
	s := v.c.Source
	if strings.TrimSpace(s.DatabaseURL) == "" {
		v.fail("source.database_url", "required (set it here or in %s)", EnvName("source.database_url"))
	}
	for _, n := range []struct{ key, name string }{{"source.slot", s.Slot}, {"source.publication", s.Publication}} {
		if name := n.name; !pgIdent.MatchString(name) {
			v.fail(n.key, "invalid name %q: want lower-case letters, digits and _, not starting with a digit, at most 63 characters", clip(name))
		}
	}
	if s.StatusInterval <= 0 {
		v.fail("source.status_interval", "must be more than 0, found %s", s.StatusInterval)
	}
}

func (v *validator) server() {
	s := v.c.Server
	if strings.TrimSpace(s.Listen) == "" {
		v.fail("server.listen", "must not be empty (default \":8080\")")
	}
	v.nonEmpty("server.allowed_origins", s.AllowedOrigins)
}

func (v *validator) logs() {
	if v.c.Audit.Log == "" {
		v.fail("audit.log", "must not be empty: stdout, stderr or a file path")
	}
	if !logLevels[v.c.Log.Level] {
		v.fail("log.level", "invalid level %q: want debug, info, warn or error", clip(v.c.Log.Level))
	}
	if !logFormats[v.c.Log.Format] {
		v.fail("log.format", "invalid format %q: want json or text", clip(v.c.Log.Format))
	}
	v.eventLog()
}

// natsName is what a stream name may be; natsToken what a subject prefix
// may be (dot-separated tokens without wildcards).
var (
	natsName  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	natsToken = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

func (v *validator) eventLog() {
	l := v.c.Log
	switch l.Backend {
	case BackendMemory, "":
		return
	case BackendNATS:
	default:
		v.fail("log.backend", "invalid backend %q: want memory or nats", clip(l.Backend))
		return
	}
	if len(l.NATS.URLs) == 0 {
		v.fail("log.nats.urls", "name at least one NATS server with backend nats")
	}
	v.nonEmpty("log.nats.urls", l.NATS.URLs)
	if !natsName.MatchString(l.NATS.Stream) {
		v.fail("log.nats.stream", "invalid stream name %q: letters, digits, _ and - only", clip(l.NATS.Stream))
	}
	if !natsToken.MatchString(l.NATS.SubjectPrefix) {
		v.fail("log.nats.subject_prefix", "invalid subject prefix %q: dot-separated tokens of letters, digits, _ and -", clip(l.NATS.SubjectPrefix))
	}
	if l.NATS.Replicas < 1 || l.NATS.Replicas > 5 {
		v.fail("log.nats.replicas", "must be 1 to 5, found %d", l.NATS.Replicas)
	}
	if l.CacheEvents < 1 {
		v.fail("log.cache_events", "must be at least 1 with backend nats, found %d", l.CacheEvents)
	}
	if (l.NATS.TLS.CertFile == "") != (l.NATS.TLS.KeyFile == "") {
		v.fail("log.nats.tls", "cert_file and key_file go together")
	}
}

// nonEmpty refuses empty entries in a list of names.
func (v *validator) nonEmpty(key string, list []string) {
	for i, s := range list {
		if strings.TrimSpace(s) == "" {
			v.fail(fmt.Sprintf("%s[%d]", key, i), "must not be empty")
		}
	}
}

func (v *validator) auth() {
	j := v.c.Auth.JWT
	if len(j.Algorithms) == 0 {
		v.fail("auth.jwt.algorithms", "at least one algorithm is needed")
	}
	var needSecret, needKey string
	for i, alg := range j.Algorithms {
		key := fmt.Sprintf("auth.jwt.algorithms[%d]", i)
		switch {
		case strings.EqualFold(alg, "none"):
			v.fail(key, "algorithm \"none\" is never allowed")
		case !slices.Contains(jwtAlgorithms, alg):
			v.fail(key, "unknown algorithm %q: want one of %s", clip(alg), strings.Join(jwtAlgorithms, ", "))
		case strings.HasPrefix(alg, "HS"):
			needSecret = alg
		default:
			needKey = alg
		}
	}
	if needSecret != "" && j.Secret == "" {
		v.fail("auth.jwt.secret", "required by %s (set it here or in %s)", needSecret, EnvName("auth.jwt.secret"))
	}
	if needKey != "" && j.PublicKeyFile == "" && j.JWKSFile == "" && j.JWKSURL == "" {
		v.fail("auth.jwt", "%s needs public_key_file, jwks_file or jwks_url", needKey)
	}
	for _, name := range slices.Sorted(maps.Keys(j.Claims)) {
		if strings.TrimSpace(j.Claims[name]) == "" {
			v.fail("auth.jwt.claims."+name, "must name a token claim")
		}
	}
	v.nonEmpty("auth.admin_roles", v.c.Auth.AdminRoles)
}

// ranges refuses negative counts and durations.
func (v *validator) ranges() {
	c := v.c
	ints := []struct {
		key string
		n   int
	}{
		{"retention.max_events", c.Retention.MaxEvents},
		{"limits.max_connections_per_ip_per_minute", c.Limits.MaxConnectionsPerIPPerMinute},
		{"limits.max_connections_per_user", c.Limits.MaxConnectionsPerUser},
		{"limits.max_subscriptions_per_connection", c.Limits.MaxSubscriptionsPerConn},
		{"limits.max_frame_bytes", c.Limits.MaxFrameBytes},
		{"limits.max_messages_per_second", c.Limits.MaxMessagesPerSecond},
		{"limits.send_queue", c.Limits.SendQueue},
		{"limits.max_sync_polls_per_user", c.Limits.MaxSyncPollsPerUser},
		{"limits.max_sync_polls_per_ip", c.Limits.MaxSyncPollsPerIP},
		{"source.max_retained_wal", int(c.Source.MaxRetainedWAL)},
		{"retention.max_held_bytes", int(c.Retention.MaxHeldBytes)},
	}
	for _, i := range ints {
		if i.n < 0 {
			v.fail(i.key, "must not be negative, found %d", i.n)
		}
	}
	durations := []struct {
		key string
		d   time.Duration
	}{
		{"source.heartbeat", c.Source.Heartbeat},
		{"server.drain_timeout", c.Server.DrainTimeout},
		{"auth.jwt.leeway", c.Auth.JWT.Leeway},
		{"auth.acl_cache_ttl", c.Auth.ACLCacheTTL},
		{"retention.max_age", c.Retention.MaxAge},
		{"source.failover_timeout", c.Source.FailoverTimeout},
		{"limits.stall_timeout", c.Limits.StallTimeout},
	}
	for _, d := range durations {
		if d.d < 0 {
			v.fail(d.key, "must not be negative, found %s", d.d)
		}
	}
	// The replication connection's wal_sender_timeout is 4/5 of it, and
	// a leader must answer PostgreSQL within that even while busy.
	if ft := c.Source.FailoverTimeout; ft > 0 && ft < time.Second {
		v.fail("source.failover_timeout", "must be at least 1s (a leader that does not answer PostgreSQL for 4/5 of it is replaced), found %s", ft)
	}
}

func (v *validator) mappings() {
	tables := map[string]int{}
	for i, m := range v.c.Mappings {
		key := fmt.Sprintf("mappings[%d]", i)
		if t, ok := tableName(m.Table); !ok {
			v.fail(key+".table", "invalid table %q: want name or schema.name", clip(m.Table))
		} else if first, dup := tables[t]; dup {
			v.fail(key+".table", "table %q is already mapped by mappings[%d]", clip(m.Table), first)
		} else {
			tables[t] = i
		}
		if !domainName.MatchString(m.Domain) {
			v.fail(key+".domain", "invalid domain %q: want a letter then letters, digits or _", clip(m.Domain))
		}
		v.nonEmpty(key+".payload", m.Payload)
		v.templates(key+".channels", m.Channels)
		for j, r := range m.Events {
			rk := fmt.Sprintf("%s.events[%d]", key, j)
			if !ruleOps[r.On] {
				v.fail(rk+".on", "invalid operation %q: want insert, update, delete or truncate", clip(r.On))
			}
			if !eventType.MatchString(r.Type) {
				v.fail(rk+".type", "invalid event type %q: want <domain>.<action>, e.g. exam.published", clip(r.Type))
			}
			v.templates(rk+".channels", r.Channels)
		}
	}
}

// tableName normalises "public.t" to "t" and refuses empty parts.
func tableName(s string) (string, bool) {
	schema, name, qualified := strings.Cut(s, ".")
	if !qualified {
		return s, strings.TrimSpace(s) != ""
	}
	if strings.TrimSpace(schema) == "" || strings.TrimSpace(name) == "" || strings.Contains(name, ".") {
		return "", false
	}
	if schema == "public" {
		return name, true
	}
	return s, true
}

// templates checks channel templates: braces balanced, each {name},
// {old.name} or {new.name}.
func (v *validator) templates(key string, list []string) {
	for i, t := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		if t == "" {
			v.fail(k, "empty channel template")
			continue
		}
		names, err := braces(t)
		if err != nil {
			v.fail(k, "channel template %q: %v", clip(t), err)
			continue
		}
		for _, n := range names {
			col := strings.TrimPrefix(strings.TrimPrefix(n, "old."), "new.")
			if !templateName.MatchString(col) {
				v.fail(k, "channel template %q: {%s}: want {column}, {old.column} or {new.column}", clip(t), clip(n))
			}
		}
	}
}

// braces returns the names between braces in s, refusing unbalanced or
// nested braces.
func braces(s string) ([]string, error) {
	var names []string
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			break
		}
		if rest[open] == '}' {
			return nil, errors.New("unmatched '}'")
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, errors.New("unclosed '{'")
		}
		names = append(names, rest[open+1:open+1+end])
		rest = rest[open+1+end+1:]
	}
	return names, nil
}

func (v *validator) channels() {
	patterns := map[string]int{}
	for i, ch := range v.c.Channels {
		key := fmt.Sprintf("channels[%d]", i)
		params := v.pattern(key+".pattern", ch.Pattern)
		if first, dup := patterns[ch.Pattern]; dup && ch.Pattern != "" {
			v.fail(key+".pattern", "pattern %q is already used by channels[%d]", clip(ch.Pattern), first)
		} else {
			patterns[ch.Pattern] = i
		}
		for _, name := range slices.Sorted(maps.Keys(ch.Params)) {
			re := ch.Params[name]
			pk := key + ".params." + name
			if params != nil && !params[name] {
				v.fail(pk, "param %q is not in the pattern %q", clip(name), clip(ch.Pattern))
			}
			if _, err := regexp.Compile(anchor(re)); err != nil {
				v.fail(pk, "invalid regexp %q: %v", clip(re), err)
			}
		}
		if len(ch.Allow) == 0 {
			v.fail(key+".allow", "at least one rule is needed (nobody could read this channel)")
		}
		for j, r := range ch.Allow {
			v.allow(fmt.Sprintf("%s.allow[%d]", key, j), r, params)
		}
		v.nonEmpty(key+".recheck_on", ch.RecheckOn)
	}
}

// pattern checks a channel pattern and returns its param names, nil when
// the pattern is invalid.
func (v *validator) pattern(key, p string) map[string]bool {
	if p == "" {
		v.fail(key, "required")
		return nil
	}
	names, err := braces(p)
	if err != nil {
		v.fail(key, "pattern %q: %v", clip(p), err)
		return nil
	}
	params := map[string]bool{}
	for _, n := range names {
		switch {
		case !templateName.MatchString(n):
			v.fail(key, "pattern %q: invalid param {%s}: want a letter or _ then letters, digits or _", clip(p), clip(n))
			return nil
		case params[n]:
			v.fail(key, "pattern %q: param {%s} appears twice", clip(p), n)
			return nil
		}
		params[n] = true
	}
	return params
}

// allow checks one access rule: not empty, and naming only params of the
// channel's pattern (params nil when the pattern itself is invalid).
func (v *validator) allow(key string, r AllowRule, params map[string]bool) {
	if len(r.Roles) == 0 && r.Self == "" && len(r.Claim) == 0 && strings.TrimSpace(r.When) == "" && strings.TrimSpace(r.SQL) == "" {
		v.fail(key, "empty rule: give roles, self, claim, when or sql")
		return
	}
	v.nonEmpty(key+".roles", r.Roles)
	if r.Self != "" && params != nil && !params[r.Self] {
		v.fail(key+".self", "%q is not a param of the pattern", clip(r.Self))
	}
	for _, claim := range slices.Sorted(maps.Keys(r.Claim)) {
		want := r.Claim[claim]
		names, err := braces(want)
		if err != nil {
			v.fail(key+".claim."+claim, "%q: %v", clip(want), err)
			continue
		}
		for _, n := range names {
			if params != nil && !params[n] {
				v.fail(key+".claim."+claim, "{%s} is not a param of the pattern", clip(n))
			}
		}
	}
}
