package rls_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/authzd/authzd/internal/rls"
)

// This file starts the real database engines the proofs run against: SQLite
// in-process, and PostgreSQL and MariaDB from Debian's packages on loopback,
// each once per test binary, stopped by TestMain.

// skipEnv opts out of the PostgreSQL and MariaDB proofs, for a laptop
// without the servers. CI never sets it: a missing server fails the tests.
const skipEnv = "AUTHZD_SKIP_DB_TESTS"

// startTimeout bounds the start of one server on a loaded machine.
const startTimeout = 90 * time.Second

// mode is one string-escaping mode of an engine, set on a dedicated
// connection.
type mode struct {
	name string
	q    querier
}

// querier runs SQL text on one connection of an engine.
type querier interface {
	// Exec runs a statement, with arguments bound by the driver.
	Exec(ctx context.Context, query string, args ...any) error
	// IDs runs a query as plain text and returns its first column.
	IDs(ctx context.Context, query string) ([]int64, error)
	Close()
}

// sqlQuerier is a querier over database/sql (MariaDB and SQLite); its
// queries without arguments go to the server as plain text.
type sqlQuerier struct{ db *sql.DB }

func (q sqlQuerier) Exec(ctx context.Context, query string, args ...any) error {
	_, err := q.db.ExecContext(ctx, query, args...)
	return err
}

func (q sqlQuerier) IDs(ctx context.Context, query string) ([]int64, error) {
	rows, err := q.db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (q sqlQuerier) Close() { q.db.Close() }

// pgQuerier is a querier over one pgx connection. IDs uses the simple query
// protocol, as psycopg2 under Superset does, so the server parses the clause
// text under the session's standard_conforming_strings.
type pgQuerier struct {
	mu   sync.Mutex
	conn *pgx.Conn
}

func (q *pgQuerier) Exec(ctx context.Context, query string, args ...any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, err := q.conn.Exec(ctx, query, args...)
	return err
}

func (q *pgQuerier) IDs(ctx context.Context, query string) ([]int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	results, err := q.conn.PgConn().Exec(ctx, query).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) != 1 {
		return nil, fmt.Errorf("got %d results, want 1", len(results))
	}
	ids := []int64{}
	for _, row := range results[0].Rows {
		id, err := strconv.ParseInt(string(row[0]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("id %q: %w", row[0], err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (q *pgQuerier) Close() { q.conn.Close(context.Background()) }

// engine is a running database engine with one connection pool per mode.
type engine struct {
	name    string
	dialect rls.Dialect
	modes   []mode
}

// server is a database server process started by the tests.
type server struct {
	name string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // of cmd.Wait, valid once done is closed
	log  string
	// stop asks the server to shut down.
	stop syscall.Signal
}

var (
	serversOnce sync.Once
	pgEngine    *engine
	pgErr       error
	myEngine    *engine
	myErr       error
	serversMu   sync.Mutex
	servers     []*server
	// serverDirs are the servers' temporary directories, removed at the
	// end even when a server failed to start.
	serverDirs []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopServers()
	os.Exit(code)
}

// startServers starts PostgreSQL and MariaDB side by side, once.
func startServers() {
	serversOnce.Do(func() {
		if os.Getenv(skipEnv) == "1" {
			return
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); pgEngine, pgErr = startPostgres() }()
		go func() { defer wg.Done(); myEngine, myErr = startMariaDB() }()
		wg.Wait()
	})
}

// needServer returns the named server engine, or fails the test loudly when
// it could not be started; it skips only under AUTHZD_SKIP_DB_TESTS=1.
func needServer(t testing.TB, dialect rls.Dialect) *engine {
	t.Helper()
	if os.Getenv(skipEnv) == "1" {
		t.Skipf("%s=1: the PostgreSQL and MariaDB proofs are skipped", skipEnv)
	}
	startServers()
	var e *engine
	var err error
	switch dialect {
	case rls.PostgreSQL:
		e, err = pgEngine, pgErr
	case rls.MySQL:
		e, err = myEngine, myErr
	default:
		t.Fatalf("no server for dialect %q", dialect)
	}
	if err != nil {
		t.Fatalf("%v\ninstall with scripts/install-databases.sh "+
			"(or set %s=1 to skip the server proofs locally)", err, skipEnv)
	}
	return e
}

var (
	sqliteOnce   sync.Once
	sqliteEngine *engine
	sqliteErr    error
	sqliteDir    string
)

// needSQLite returns the in-process SQLite engine, with a UTF-8 and a
// UTF-16 database as its two modes.
func needSQLite(t testing.TB) *engine {
	t.Helper()
	sqliteOnce.Do(func() {
		sqliteDir, sqliteErr = os.MkdirTemp("", "authzd-rls-sqlite-")
		if sqliteErr != nil {
			return
		}
		e := &engine{name: "sqlite", dialect: rls.SQLite}
		for _, enc := range []string{"UTF-8", "UTF-16le"} {
			path := filepath.Join(sqliteDir, enc+".db")
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=encoding(%27"+enc+"%27)")
			if err != nil {
				sqliteErr = fmt.Errorf("open sqlite %q: %w", path, err)
				return
			}
			db.SetMaxOpenConns(1)
			var got string
			if err := db.QueryRow("PRAGMA encoding").Scan(&got); err != nil {
				sqliteErr = fmt.Errorf("sqlite %q: pragma encoding: %w", path, err)
				return
			}
			if !strings.EqualFold(got, enc) {
				sqliteErr = fmt.Errorf("sqlite %q: encoding is %q, want %q", path, got, enc)
				return
			}
			e.modes = append(e.modes, mode{name: "encoding=" + enc, q: sqlQuerier{db}})
		}
		sqliteEngine = e
	})
	if sqliteErr != nil {
		t.Fatalf("start sqlite: %v", sqliteErr)
	}
	return sqliteEngine
}

// stopServers stops every started server and removes its directory.
func stopServers() {
	for _, e := range []*engine{pgEngine, myEngine, sqliteEngine} {
		if e == nil {
			continue
		}
		for _, m := range e.modes {
			m.q.Close()
		}
	}
	if sqliteDir != "" {
		os.RemoveAll(sqliteDir)
	}
	serversMu.Lock()
	defer serversMu.Unlock()
	for _, s := range servers {
		s.shutdown()
	}
	for _, dir := range serverDirs {
		os.RemoveAll(dir)
	}
	servers, serverDirs = nil, nil
}

// shutdown stops the server, killing it if it does not stop in time.
func (s *server) shutdown() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(s.stop)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// systemUser returns the credentials of the named system user when running
// as root, and nil otherwise (the server then runs as the current user).
func systemUser(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up system user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid %q of %q: %w", u.Uid, name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid %q of %q: %w", u.Gid, name, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// serverDir makes a temporary directory the system user owns, under a
// parent that user can traverse.
func serverDir(name string, cred *syscall.Credential) (string, error) {
	parent := os.TempDir()
	if cred != nil && !traversable(parent) {
		// The system user must reach the directory: a TMPDIR under
		// /root would not do.
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "authzd-rls-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("make %s directory: %w", name, err)
	}
	serversMu.Lock()
	serverDirs = append(serverDirs, dir)
	serversMu.Unlock()
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, fmt.Errorf("chmod %q: %w", dir, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return dir, fmt.Errorf("chown %q: %w", dir, err)
		}
	}
	return dir, nil
}

// traversable reports whether every directory from / to dir may be
// searched by other users.
func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// run runs a setup command to completion, its output in logPath.
func run(ctx context.Context, cred *syscall.Credential, dir, logPath, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(logPath, out, 0o644)
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, tail(out))
	}
	return nil
}

// launch starts a server process in the background.
func launch(name, dir string, cred *syscall.Credential, stop syscall.Signal, bin string, args ...string) (*server, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", logPath, err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s := &server{name: name, dir: dir, cmd: cmd, done: make(chan struct{}), log: logPath, stop: stop}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	serversMu.Lock()
	servers = append(servers, s)
	serversMu.Unlock()
	return s, nil
}

// waitReady polls ping until it succeeds, the server exits, or time runs
// out.
func (s *server) waitReady(ctx context.Context, ping func(context.Context) error) error {
	for {
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ping(pingCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			out, _ := os.ReadFile(s.log)
			return fmt.Errorf("%s exited before answering: %v\n%s", s.name, s.err, tail(out))
		case <-ctx.Done():
			out, _ := os.ReadFile(s.log)
			return fmt.Errorf("%s did not answer within %s: %v\n%s", s.name, startTimeout, err, tail(out))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// findBinary finds a server binary on PATH or in the given globs, taking
// the last match (the highest version) of a glob.
func findBinary(name string, globs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(g)
		sort.Slice(matches, func(i, j int) bool { return versionLess(matches[i], matches[j]) })
		if len(matches) > 0 {
			return matches[len(matches)-1], nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", name, strings.Join(globs, ", "))
}

// versionLess orders paths so that .../9/bin sorts before .../15/bin.
func versionLess(a, b string) bool {
	na, nb := firstNumber(a), firstNumber(b)
	if na != nb {
		return na < nb
	}
	return a < b
}

func firstNumber(s string) int {
	start := strings.IndexAny(s, "0123456789")
	if start < 0 {
		return -1
	}
	end := start
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(s[start:end])
	return n
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a log for an error message.
func tail(out []byte) string {
	const max = 3000
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return string(out)
}

// startPostgres initialises and starts a PostgreSQL server as the postgres
// system user, and opens a pool per standard_conforming_strings setting.
func startPostgres() (*engine, error) {
	initdb, err := findBinary("initdb", "/usr/lib/postgresql/*/bin/initdb")
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	postgres := filepath.Join(filepath.Dir(initdb), "postgres")
	if resolved, err := filepath.EvalSymlinks(initdb); err == nil {
		postgres = filepath.Join(filepath.Dir(resolved), "postgres")
	}
	cred, err := systemUser("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	dir, err := serverDir("postgresql", cred)
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	data := filepath.Join(dir, "data")
	if err := run(ctx, cred, dir, filepath.Join(dir, "initdb.log"), initdb,
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
		"--no-sync"); err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	s, err := launch("postgresql", dir, cred, syscall.SIGINT, postgres,
		"-D", data, "-p", strconv.Itoa(port), "-c", "unix_socket_directories=",
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=20")
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	e := &engine{name: "postgresql", dialect: rls.PostgreSQL}
	connect := func(ctx context.Context, scs string) (*pgx.Conn, error) {
		return pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres"+
			"?sslmode=disable&standard_conforming_strings=%s", port, scs))
	}
	if err := s.waitReady(ctx, func(ctx context.Context) error {
		c, err := connect(ctx, "on")
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		return nil, err
	}
	for _, scs := range []string{"on", "off"} {
		conn, err := connect(ctx, scs)
		if err != nil {
			return nil, fmt.Errorf("postgresql: connect: %w", err)
		}
		var got string
		if err := conn.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&got); err != nil {
			return nil, fmt.Errorf("postgresql: show standard_conforming_strings: %w", err)
		}
		if got != scs {
			return nil, fmt.Errorf("postgresql: standard_conforming_strings is %q, want %q", got, scs)
		}
		e.modes = append(e.modes, mode{name: "standard_conforming_strings=" + scs,
			q: &pgQuerier{conn: conn}})
	}
	return e, nil
}

// startMariaDB initialises and starts a MariaDB server that runs as the
// mysql system user, and opens a pool per sql_mode.
func startMariaDB() (*engine, error) {
	installDB, err := findBinary("mariadb-install-db", "/usr/bin/mariadb-install-db",
		"/usr/bin/mysql_install_db")
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	mariadbd, err := findBinary("mariadbd", "/usr/sbin/mariadbd", "/usr/sbin/mysqld")
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	cred, err := systemUser("mysql")
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	dir, err := serverDir("mariadb", cred)
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	var userArgs []string
	if cred != nil {
		// mariadbd and mariadb-install-db drop root to this user themselves.
		userArgs = []string{"--user=mysql"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	data := filepath.Join(dir, "data")
	args := append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + dir,
		"--skip-test-db",
		"--auth-root-authentication-method=normal", "--skip-name-resolve"}, userArgs...)
	if err := run(ctx, nil, dir, filepath.Join(dir, "install-db.log"), installDB, args...); err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	args = append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + dir,
		"--bind-address=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--socket=" + filepath.Join(dir, "mariadb.sock"),
		"--pid-file=" + filepath.Join(dir, "mariadb.pid"),
		"--skip-grant-tables", "--skip-name-resolve", "--skip-log-bin",
		"--innodb-buffer-pool-size=16M", "--innodb-flush-log-at-trx-commit=0"}, userArgs...)
	// Started as the mysql user directly rather than dropping root itself,
	// so that the parent-death signal survives and a crashed test binary
	// leaves no server behind.
	s, err := launch("mariadb", dir, cred, syscall.SIGTERM, mariadbd, args...)
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	admin, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/", port))
	if err != nil {
		return nil, fmt.Errorf("mariadb: open: %w", err)
	}
	defer admin.Close()
	if err := s.waitReady(ctx, admin.PingContext); err != nil {
		return nil, err
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE rls CHARACTER SET utf8mb4"); err != nil {
		return nil, fmt.Errorf("mariadb: create database: %w", err)
	}
	e := &engine{name: "mariadb", dialect: rls.MySQL}
	for _, m := range []string{"", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES",
		"ANSI,NO_BACKSLASH_ESCAPES"} {
		dsn := fmt.Sprintf("root@tcp(127.0.0.1:%d)/rls?charset=utf8mb4", port)
		name := "sql_mode=default"
		if m != "" {
			dsn += "&sql_mode=%27" + m + "%27"
			name = "sql_mode=" + m
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, fmt.Errorf("mariadb: open: %w", err)
		}
		db.SetMaxOpenConns(1)
		var got string
		if err := db.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode").Scan(&got); err != nil {
			return nil, fmt.Errorf("mariadb: %s: read sql_mode: %w", name, err)
		}
		for _, want := range strings.Split(m, ",") {
			if want == "ANSI" {
				want = "PIPES_AS_CONCAT"
			}
			if want != "" && !strings.Contains(got, want) {
				return nil, fmt.Errorf("mariadb: sql_mode is %q, want it to hold %q", got, want)
			}
		}
		e.modes = append(e.modes, mode{name: name, q: sqlQuerier{db}})
	}
	return e, nil
}
