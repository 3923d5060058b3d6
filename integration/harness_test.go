// Package integration runs cdc-broadcaster end to end against a real
// PostgreSQL (wal_level=logical) that the tests start themselves.
//
// TestMain builds the binary once and starts one throwaway cluster for the
// whole package from the system's PostgreSQL server binaries (run `make test`
// or scripts/test-deps.sh to install them). Each test makes its own database
// with NewDB, writes a config with WriteConfig and runs the binary with Start
// or StartTail. Replication slot names are cluster-wide: tests that run in
// parallel must give each process its own slot ("source.slot" edit). Tests
// that stop or restart the cluster (PG.Stop, PG.Restart) must not run in
// parallel with others.
//
// The harness is Linux-only: it drops to the postgres system user when run
// as root and ties child processes to the test process's life.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"
)

// BinPath is the cdc-broadcaster binary built by TestMain (or the path in
// the HARNESS_BIN environment variable, which skips the build).
var BinPath string

// PG is the package's PostgreSQL cluster, started by TestMain.
var PG *Cluster

var (
	// repoRoot is the module root (the directory holding go.mod).
	repoRoot string
	// adminPool is a superuser pool on the cluster's "postgres" database.
	adminPool *pgxpool.Pool
	// dbSeq numbers the databases made by NewDB.
	dbSeq atomic.Int64

	poolsMu sync.Mutex // guards pools
	// pools are the harness's live pools, reset when the cluster starts
	// again so that no test sees a connection the restart broke.
	pools = map[*pgxpool.Pool]bool{}
)

func trackPool(p *pgxpool.Pool) {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	pools[p] = true
}

func closePool(p *pgxpool.Pool) {
	poolsMu.Lock()
	delete(pools, p)
	poolsMu.Unlock()
	p.Close()
}

func resetPools() {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	for p := range pools {
		p.Reset()
	}
}

const (
	readinessMsg   = `"msg":"streaming"`
	readyTimeout   = 60 * time.Second
	pgCtlTimeout   = 60 // seconds, for pg_ctl -t
	stopProcWait   = 30 * time.Second
	dropDBDeadline = 60 * time.Second
)

// TestMain builds the binary and starts the cluster, runs the tests, then
// stops the cluster and removes its files, also when a test fails or the
// run is interrupted. A watchdog process cleans up if this process dies
// without doing so (for example on a -timeout panic).
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run()) // `go test -list` needs neither cluster nor binary
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	env, err := setUp()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		env.tearDown()
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "integration: %v: stopping the cluster\n", s)
		env.tearDown()
		os.Exit(2)
	}()
	code := m.Run()
	signal.Stop(sigs)
	env.tearDown()
	return code
}

// harnessEnv owns everything TestMain made.
type harnessEnv struct {
	root     string        // temp dir holding data, socket, log and binary
	watchdog *exec.Cmd     // removes root if this process dies
	wdPipe   *os.File      // write end of the watchdog's stdin
	once     sync.Once     // tearDown runs once
	cluster  *Cluster      // nil until initdb ran
	pool     *pgxpool.Pool // adminPool
}

func setUp() (*harnessEnv, error) {
	env := &harnessEnv{}
	root, err := findRepoRoot()
	if err != nil {
		return env, err
	}
	repoRoot = root

	binDir, err := findPGBin()
	if err != nil {
		return env, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return env, err
	}

	env.root, err = os.MkdirTemp("", "cdc-it-")
	if err != nil {
		return env, fmt.Errorf("make temp dir: %w", err)
	}
	for _, d := range []string{"", "sock", "bin"} {
		p := filepath.Join(env.root, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return env, fmt.Errorf("make %s: %w", p, err)
		}
		if err := chownTo(p, cred); err != nil {
			return env, err
		}
	}
	c := &Cluster{
		Dir:     filepath.Join(env.root, "data"),
		BinDir:  binDir,
		Host:    "127.0.0.1",
		root:    env.root,
		sockDir: filepath.Join(env.root, "sock"),
		logFile: filepath.Join(env.root, "postgres.log"),
		cred:    cred,
	}
	if err := env.startWatchdog(c); err != nil {
		return env, err
	}

	// Build the binary while the cluster starts: both take seconds.
	buildErr := make(chan error, 1)
	buildStart := time.Now()
	var buildTook time.Duration
	if p := os.Getenv("HARNESS_BIN"); p != "" {
		BinPath = p
		buildErr <- nil
	} else {
		go func() {
			out := filepath.Join(env.root, "bin", "cdc-broadcaster")
			err := goBuild(out)
			buildTook = time.Since(buildStart)
			if err == nil {
				BinPath = out
			}
			buildErr <- err
		}()
	}

	t0 := time.Now()
	if err := c.initdb(); err != nil {
		<-buildErr
		return env, err
	}
	initTook := time.Since(t0)
	env.cluster = c
	t1 := time.Now()
	if err := c.start(); err != nil {
		<-buildErr
		return env, err
	}
	startTook := time.Since(t1)
	PG = c

	pool, err := pgxpool.New(context.Background(), c.SuperURL("postgres"))
	if err != nil {
		<-buildErr
		return env, fmt.Errorf("connect to the cluster: %w", err)
	}
	env.pool = pool
	adminPool = pool
	trackPool(pool)

	if err := <-buildErr; err != nil {
		return env, err
	}
	if testing.Verbose() {
		fmt.Printf("integration: cluster on port %d ready in %v (initdb %v, start %v); binary %s (build %v)\n",
			c.Port, (initTook + startTook).Round(time.Millisecond), initTook.Round(time.Millisecond),
			startTook.Round(time.Millisecond), BinPath, buildTook.Round(time.Millisecond))
	}
	return env, nil
}

// tearDown stops the cluster and removes its files; safe to call twice.
func (e *harnessEnv) tearDown() {
	e.once.Do(func() {
		closeNATSClusters()
		if e.pool != nil {
			closePool(e.pool)
		}
		if e.cluster != nil {
			if err := e.cluster.stop("fast"); err != nil {
				fmt.Fprintf(os.Stderr, "integration: %v; stopping immediately\n", err)
				if err := e.cluster.stop("immediate"); err != nil {
					fmt.Fprintf(os.Stderr, "integration: %v\n", err)
				}
			}
		}
		if e.wdPipe != nil {
			// "done": the cluster is down, the watchdog only removes files.
			_, _ = e.wdPipe.WriteString("done\n")
			_ = e.wdPipe.Close()
			waitTimeout(e.watchdog, 15*time.Second)
		}
		if e.root != "" {
			if err := os.RemoveAll(e.root); err != nil {
				fmt.Fprintf(os.Stderr, "integration: remove %s: %v\n", e.root, err)
			}
		}
	})
}

// watchdogScript waits for EOF or "done" on stdin. EOF without "done" means
// the test process died: stop the cluster at once. Either way remove root.
const watchdogScript = `read -r line || true
if [ "$line" != done ]; then "$1" -D "$2" stop -m immediate -w -t 30 >/dev/null 2>&1 || true; fi
rm -rf "$3"`

func (e *harnessEnv) startWatchdog(c *Cluster) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("watchdog pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "watchdog",
		filepath.Join(c.BinDir, "pg_ctl"), c.Dir, e.root)
	cmd.Stdin = r
	cmd.Dir = e.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: c.cred}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	r.Close()
	e.watchdog, e.wdPipe = cmd, w
	return nil
}

func waitTimeout(cmd *exec.Cmd, d time.Duration) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
	}
}

func goBuild(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "./cmd/cdc-broadcaster")
	cmd.Dir = repoRoot
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build ./cmd/cdc-broadcaster for the integration tests failed (%v):\n%s"+
			"fix the build (go build ./cmd/cdc-broadcaster), or set HARNESS_BIN to a built binary", err, buf.String())
	}
	return nil
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find repo root: no go.mod above %s", dir)
		}
	}
}

// findPGBin finds the PostgreSQL server bin dir: $PG_BIN, the newest
// /usr/lib/postgresql/*/bin, `pg_config --bindir`, or initdb on PATH.
func findPGBin() (string, error) {
	ok := func(d string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("PG_BIN"); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("PG_BIN=%s lacks initdb, pg_ctl or postgres", d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); ok(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err := filepath.EvalSymlinks(p); err == nil && ok(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in $PG_BIN, " +
		"/usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH: run `make test` or scripts/test-deps.sh to install them")
}

// pgMajor reads the version out of /usr/lib/postgresql/<v>/bin.
func pgMajor(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

// postgresCredential is the postgres system user's when running as root
// (initdb and postgres refuse to run as root), else nil: run as oneself.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres system user to run the cluster (%v): "+
			"run `make test` or scripts/test-deps.sh", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has odd ids %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownTo(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("chown %s to postgres: %w", path, err)
	}
	return nil
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Cluster is the package's PostgreSQL cluster. Its methods that stop it are
// not safe to use from tests running in parallel.
type Cluster struct {
	// Dir is the data directory (PGDATA).
	Dir string
	// BinDir holds initdb, pg_ctl and postgres.
	BinDir string
	// Host is the address the server listens on (127.0.0.1).
	Host string
	// Port is the server's TCP port; it stays the same across restarts.
	Port int

	root    string
	sockDir string
	logFile string
	cred    *syscall.Credential // nil: run as this process's user

	mu      sync.Mutex // guards running
	running bool
}

// pgCmd runs one of the cluster's binaries as the postgres user.
func (c *Cluster) pgCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.root
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

func (c *Cluster) run(name string, args ...string) error {
	out, err := c.pgCmd(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) initdb() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.Port = port
	if err := c.run("initdb", "-D", c.Dir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return err
	}
	conf := fmt.Sprintf(`
# integration test settings (not durable, test only)
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 200
fsync = off
synchronous_commit = on  # off loses acknowledged commits on Restart (immediate stop); with fsync off, on costs little
full_page_writes = off
shared_buffers = 64MB
log_line_prefix = '%%m [%%p] %%d '
log_min_messages = warning
`, c.Port, c.sockDir)
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	hba := `# integration tests only: trust local and loopback connections
local all         all               trust
local replication all               trust
host  all         all 127.0.0.1/32  trust
host  replication all 127.0.0.1/32  trust
`
	if err := os.WriteFile(filepath.Join(c.Dir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	return chownTo(filepath.Join(c.Dir, "pg_hba.conf"), c.cred)
}

func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.run("pg_ctl", "-D", c.Dir, "-l", c.logFile, "-w", "-t", strconv.Itoa(pgCtlTimeout), "start"); err != nil {
		return fmt.Errorf("start postgres: %w\nlast lines of %s:\n%s", err, c.logFile, tailFile(c.logFile, 40))
	}
	c.running = true
	resetPools()
	return nil
}

func (c *Cluster) stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.run("pg_ctl", "-D", c.Dir, "-w", "-t", strconv.Itoa(pgCtlTimeout), "stop", "-m", mode); err != nil {
		return fmt.Errorf("stop postgres (-m %s): %w\nlast lines of %s:\n%s", mode, err, c.logFile, tailFile(c.logFile, 40))
	}
	c.running = false
	return nil
}

func (c *Cluster) isRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// Stop shuts the cluster down (pg_ctl stop -m fast). If the test ends with
// the cluster still down, it is started again for the tests after it.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop("fast"); err != nil {
		t.Fatal(err)
	}
	c.restartAtCleanup(t)
}

// Start starts the cluster again on the same port and data directory.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
}

// Restart stops the cluster abruptly (pg_ctl stop -m immediate, a crash as
// far as the server can tell) and starts it again, which runs recovery.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if err := c.stop("immediate"); err != nil {
		t.Fatal(err)
	}
	c.restartAtCleanup(t)
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) restartAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		if !c.isRunning() {
			t.Log("cluster left stopped by the test: starting it again")
			if err := c.start(); err != nil {
				t.Error(err)
			}
		}
	})
}

// SuperURL is a superuser URL for database db over TCP.
func (c *Cluster) SuperURL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", c.Host, c.Port, db)
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string { return tailFile(c.logFile, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DB is a fresh database in the cluster, made by NewDB and dropped when the
// test ends.
type DB struct {
	// Name is the database's name (t_<test>_<n>).
	Name string
	// URL is a superuser URL for this database.
	URL string
	// Pool is a pgx pool on URL, closed when the test ends.
	Pool *pgxpool.Pool
}

// DBOption changes what NewDB does.
type DBOption func(*dbOptions)

type dbOptions struct {
	exampleData   bool
	migrationsDir string
}

// WithExampleData also applies migrations whose name contains
// "example_data".
func WithExampleData() DBOption { return func(o *dbOptions) { o.exampleData = true } }

// withMigrationsDir applies the migrations of dir instead of migrations/.
func withMigrationsDir(dir string) DBOption { return func(o *dbOptions) { o.migrationsDir = dir } }

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// NewDB creates a fresh database named t_<test>_<n>, applies every
// migrations/*.sql file in name order (those whose name contains
// "example_data" only with WithExampleData), and drops it when the test
// ends, first ending its sessions and walsenders and dropping its
// replication slots.
func NewDB(t testing.TB, opts ...DBOption) *DB {
	t.Helper()
	if PG == nil || adminPool == nil {
		t.Fatal("integration: no cluster (TestMain did not run?)")
	}
	o := dbOptions{migrationsDir: filepath.Join(repoRoot, "migrations")}
	for _, opt := range opts {
		opt(&o)
	}
	files, err := migrationFiles(o.migrationsDir, o.exampleData)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	slug := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(slug) > 40 {
		slug = slug[:40]
	}
	name := fmt.Sprintf("t_%s_%d", slug, dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := adminPool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" STRATEGY = FILE_COPY"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	db := &DB{Name: name, URL: PG.SuperURL(name)}
	t.Cleanup(func() { db.drop(t) })

	created := time.Now()
	db.Pool, err = pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatalf("connect to %s: %v", name, err)
	}
	trackPool(db.Pool)
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read migration: %v", err)
		}
		if _, err := db.Pool.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("apply migration %s to %s: %v", filepath.Base(f), name, err)
		}
	}
	t.Logf("NewDB %s in %v (create %v, %d migrations %v)", name, time.Since(start).Round(time.Millisecond),
		created.Sub(start).Round(time.Millisecond), len(files), time.Since(created).Round(time.Millisecond))
	return db
}

// migrationFiles lists dir/*.sql in name order, without example data
// unless asked.
func migrationFiles(dir string, exampleData bool) ([]string, error) {
	all, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, fmt.Errorf("list migrations in %s: %w", dir, err)
	}
	sort.Strings(all)
	var files []string
	for _, f := range all {
		if !exampleData && strings.Contains(filepath.Base(f), "example_data") {
			continue
		}
		files = append(files, f)
	}
	return files, nil
}

// drop ends the database's sessions (walsenders included), drops its
// replication slots and the database, retrying while slots are still
// being released.
func (db *DB) drop(t testing.TB) {
	if db.Pool != nil {
		closePool(db.Pool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dropDBDeadline)
	defer cancel()
	var lastErr error
	for ctx.Err() == nil {
		lastErr = db.tryDrop(ctx)
		if lastErr == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Errorf("drop database %s: %v", db.Name, lastErr)
}

func (db *DB) tryDrop(ctx context.Context) error {
	if _, err := adminPool.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
		db.Name); err != nil {
		return fmt.Errorf("terminate sessions: %w", err)
	}
	if _, err := adminPool.Exec(ctx,
		`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`,
		db.Name); err != nil {
		return fmt.Errorf("drop replication slots: %w", err)
	}
	var slots int
	if err := adminPool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`,
		db.Name).Scan(&slots); err != nil {
		return fmt.Errorf("count replication slots: %w", err)
	}
	if slots > 0 {
		return fmt.Errorf("%d replication slots still active", slots)
	}
	if _, err := adminPool.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return err
	}
	return nil
}

// Exec runs sql (several statements when there are no args) and fails the
// test on error.
func (db *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q on %s: %v", sql, db.Name, err)
	}
}

// QueryInt runs a query returning one integer and fails the test on error.
func (db *DB) QueryInt(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n int64
	if err := db.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("query %q on %s: %v", sql, db.Name, err)
	}
	return n
}

// WriteConfig copies config.example.yaml (at the repo root) to a temp file
// with source.database_url set to db.URL, then applies edits: each key is
// a dotted path ("source.slot", "retention.max_events", "mappings.0.payload"
// with a number indexing a list) and each value any YAML-marshalable value.
// Missing keys are added; comments and order survive. It returns the path.
func WriteConfig(t testing.TB, db *DB, edits map[string]any) string {
	t.Helper()
	return writeConfigFrom(t, filepath.Join(repoRoot, "config.example.yaml"), db, edits)
}

func writeConfigFrom(t testing.TB, src string, db *DB, edits map[string]any) string {
	t.Helper()
	in, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read example config: %v", err)
	}
	all := map[string]any{"source.database_url": db.URL}
	for k, v := range edits {
		all[k] = v
	}
	out, err := editYAML(in, all)
	if err != nil {
		t.Fatalf("edit %s: %v", src, err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

// editYAML applies dotted-path edits to a YAML document, in key order.
func editYAML(in []byte, edits map[string]any) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(in, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode}
	}
	if len(doc.Content) == 0 {
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	keys := make([]string, 0, len(edits))
	for k := range edits {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var v yaml.Node
		if err := v.Encode(edits[k]); err != nil {
			return nil, fmt.Errorf("encode value of %s: %w", k, err)
		}
		if err := setPath(doc.Content[0], strings.Split(k, "."), &v); err != nil {
			return nil, fmt.Errorf("set %s: %w", k, err)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

// setPath sets the value at path under node, making mappings as needed.
func setPath(node *yaml.Node, path []string, v *yaml.Node) error {
	key, last := path[0], len(path) == 1
	switch node.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value != key {
				continue
			}
			if last {
				node.Content[i+1] = keepComments(node.Content[i+1], v)
				return nil
			}
			child := node.Content[i+1]
			if child.Kind != yaml.MappingNode && child.Kind != yaml.SequenceNode {
				child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				node.Content[i+1] = child
			}
			return setPath(child, path[1:], v)
		}
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
		if last {
			node.Content = append(node.Content, k, v)
			return nil
		}
		child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		node.Content = append(node.Content, k, child)
		return setPath(child, path[1:], v)
	case yaml.SequenceNode:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i > len(node.Content) {
			return fmt.Errorf("%q is not an index of a list of %d", key, len(node.Content))
		}
		if i == len(node.Content) { // one past the end appends
			node.Content = append(node.Content, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"})
		}
		if last {
			node.Content[i] = keepComments(node.Content[i], v)
			return nil
		}
		return setPath(node.Content[i], path[1:], v)
	default:
		return fmt.Errorf("cannot descend into a YAML node of kind %d at %q", node.Kind, key)
	}
}

// keepComments carries a scalar's comments over to its scalar replacement.
func keepComments(old, v *yaml.Node) *yaml.Node {
	if old.Kind == yaml.ScalarNode && v.Kind == yaml.ScalarNode {
		v.HeadComment, v.LineComment, v.FootComment = old.HeadComment, old.LineComment, old.FootComment
	}
	return v
}

// Proc is a running cdc-broadcaster started by Start. Its stdout is split
// into lines; its stderr is kept whole and logged if the test fails.
type Proc struct {
	// Cmd is the underlying command; it has been started.
	Cmd *exec.Cmd

	done chan struct{} // closed once the process exited and output is drained

	mu       sync.Mutex    // guards the fields below
	changed  chan struct{} // closed and replaced whenever output or state changes
	lines    []string
	partial  []byte
	next     int // index of the next line Line returns
	stderr   bytes.Buffer
	exited   bool
	exitCode int
}

// procWriter feeds one of the process's outputs into the Proc.
type procWriter struct {
	p      *Proc
	stderr bool
}

func (w procWriter) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.stderr {
		p.stderr.Write(b)
	} else {
		p.partial = append(p.partial, b...)
		for {
			i := bytes.IndexByte(p.partial, '\n')
			if i < 0 {
				break
			}
			p.lines = append(p.lines, strings.TrimSuffix(string(p.partial[:i]), "\r"))
			p.partial = p.partial[i+1:]
		}
	}
	p.notifyLocked()
	return len(b), nil
}

func (p *Proc) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// cdcEnvPrefix marks the binary's config overrides; the developer's own are
// kept out of tests.
const cdcEnvPrefix = "CDC_"

// Start runs BinPath with args and env added to this process's environment
// (less its CDC_* variables). The process is killed when the test ends if
// still running, and its stderr logged if the test failed.
func Start(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	if BinPath == "" {
		t.Fatal("integration: no binary (TestMain did not build it)")
	}
	return startProgram(t, BinPath, env, args...)
}

// startProgram is Start for any program.
func startProgram(t testing.TB, path string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, cdcEnvPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p := &Proc{Cmd: cmd, done: make(chan struct{}), changed: make(chan struct{})}
	cmd.Stdout = procWriter{p: p}
	cmd.Stderr = procWriter{p: p, stderr: true}
	cmd.WaitDelay = 5 * time.Second
	// Dies with the test process, even on a -timeout panic.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		if len(p.partial) > 0 {
			p.lines = append(p.lines, string(p.partial))
			p.partial = nil
		}
		p.exited = true
		p.exitCode = cmd.ProcessState.ExitCode()
		p.notifyLocked()
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s (exit %d) stderr:\n%s", p.describe(), p.exitCodeNow(), p.Stderr())
		}
	})
	return p
}

func (p *Proc) describe() string {
	return filepath.Base(p.Cmd.Path) + " " + strings.Join(p.Cmd.Args[1:], " ")
}

func (p *Proc) exitCodeNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode
}

// stderrTail is the end of stderr, for failure messages.
func (p *Proc) stderrTail() string {
	s := p.Stderr()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// Line returns the next stdout line, failing the test if none comes within
// timeout or the process exits first.
func (p *Proc) Line(t testing.TB, timeout time.Duration) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		if p.next < len(p.lines) {
			l := p.lines[p.next]
			p.next++
			p.mu.Unlock()
			return l
		}
		exited, code, ch := p.exited, p.exitCode, p.changed
		p.mu.Unlock()
		if exited {
			t.Fatalf("%s exited (code %d) with no further stdout line; stderr:\n%s", p.describe(), code, p.stderrTail())
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s printed no stdout line within %v; stderr:\n%s", p.describe(), timeout, p.stderrTail())
		}
	}
}

// WaitStderr waits until stderr contains substr, failing the test on
// timeout or if the process exits first.
func (p *Proc) WaitStderr(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	from := 0
	for {
		p.mu.Lock()
		b := p.stderr.Bytes()
		found := bytes.Contains(b[from:], []byte(substr))
		from = max(0, len(b)-len(substr)+1)
		exited, code, ch := p.exited, p.exitCode, p.changed
		p.mu.Unlock()
		if found {
			return
		}
		if exited {
			t.Fatalf("%s exited (code %d) before stderr showed %q; stderr:\n%s", p.describe(), code, substr, p.stderrTail())
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s: stderr did not show %q within %v; stderr:\n%s", p.describe(), substr, timeout, p.stderrTail())
		}
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(stopProcWait):
		t.Fatalf("%s did not exit after SIGKILL", p.describe())
	}
}

// Stop sends SIGTERM, waits for the exit and returns the exit code (-1 when
// a signal ended the process). It fails the test if the process does not
// exit within 30 s.
func (p *Proc) Stop(t testing.TB) int {
	t.Helper()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(t, stopProcWait)
}

// Wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it), failing the test after timeout.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.exitCodeNow()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v; stderr:\n%s", p.describe(), timeout, p.stderrTail())
		return 0
	}
}

// Stdout returns every stdout line so far, including those Line returned.
func (p *Proc) Stdout() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Stderr returns all of stderr so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Envelope is one line of `tail` output and one entry of /sync's events.
type Envelope struct {
	Channels []string `json:"channels"`
	Event    Event    `json:"event"`
}

// Event is an event as docs/protocol.md defines it. Numbers inside Data and
// OldData are json.Number so large values stay exact.
type Event struct {
	EventID   string         `json:"eventId"`
	Cursor    string         `json:"cursor"`
	EventType string         `json:"eventType"`
	Table     string         `json:"table"`
	Operation string         `json:"operation"`
	Data      map[string]any `json:"data"`
	OldData   map[string]any `json:"oldData"`
	Timestamp int64          `json:"timestamp"`
	UserID    string         `json:"userId"`
	TxID      uint32         `json:"txId"`
}

// ParseEnvelope decodes one JSON line into an Envelope, numbers as
// json.Number.
func ParseEnvelope(line string) (Envelope, error) {
	var e Envelope
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("decode envelope %q: %w", line, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, fmt.Errorf("decode envelope %q: trailing data", line)
	}
	return e, nil
}

// NextEvent reads the next stdout line as an Envelope.
func (p *Proc) NextEvent(t testing.TB, timeout time.Duration) Envelope {
	t.Helper()
	e, err := ParseEnvelope(p.Line(t, timeout))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// WaitEvent returns the first event within timeout for which match is
// true, skipping the others.
func (p *Proc) WaitEvent(t testing.TB, timeout time.Duration, match func(Envelope) bool) Envelope {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("%s: no matching event within %v", p.describe(), timeout)
		}
		if e := p.NextEvent(t, left); match(e) {
			return e
		}
	}
}

// StartTail starts `tail --config cfg args...` and waits until it logs that
// the replication stream has started.
func StartTail(t testing.TB, cfg string, args ...string) *Proc {
	t.Helper()
	p := Start(t, nil, append([]string{"tail", "--config", cfg}, args...)...)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	return p
}
