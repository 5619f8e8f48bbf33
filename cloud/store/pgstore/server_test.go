package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The tests run their own PostgreSQL server: initdb into a temporary
// directory, postgres on a free loopback port with its socket in that
// directory and fsync on, stopped when the tests end. As root, the server
// runs as the unprivileged "postgres" user (postgres refuses to run as
// root); Debian's postgresql package creates that user.

const installHint = "the PostgreSQL store tests start their own server and need PostgreSQL's " +
	"server binaries (initdb, postgres): install them with `apt-get install -y postgresql` " +
	"(Debian puts them in /usr/lib/postgresql/VERSION/bin; set GATEHOUSE_PG_BIN to another directory), " +
	"or set GATEHOUSE_SKIP_POSTGRES=1 to skip these tests"

var (
	serverOnce sync.Once
	server     *pgServer
	serverErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil {
		if err := server.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgstore tests: stopping PostgreSQL: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// mustServer returns the tests' PostgreSQL server, starting it on first use.
// It skips the test if GATEHOUSE_SKIP_POSTGRES=1 and fails it if the server
// cannot start.
func mustServer(t testing.TB) *pgServer {
	t.Helper()
	if os.Getenv("GATEHOUSE_SKIP_POSTGRES") == "1" {
		t.Skip("GATEHOUSE_SKIP_POSTGRES=1")
	}
	serverOnce.Do(func() { server, serverErr = startServer() })
	if serverErr != nil {
		t.Fatalf("PostgreSQL: %v", serverErr)
	}
	return server
}

type pgServer struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the postgres process has exited
	log  string
}

// connString is the connection string of database postgres as the tests'
// superuser, over loopback TCP.
func (s *pgServer) connString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=gatehouse dbname=postgres sslmode=disable connect_timeout=10", s.port)
}

// binDir finds the directory holding initdb and postgres.
func binDir() (string, error) {
	if d := os.Getenv("GATEHOUSE_PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			return "", fmt.Errorf("GATEHOUSE_PG_BIN=%s: %v; %s", d, err, installHint)
		}
		return d, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", errors.New("no /usr/lib/postgresql/*/bin/postgres: " + installHint)
	}
	// The highest major version.
	slices.SortFunc(found, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return va - vb
	})
	d := filepath.Dir(found[len(found)-1])
	if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
		return "", fmt.Errorf("%s has postgres but no initdb: %s", d, installHint)
	}
	return d, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startServer() (*pgServer, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	// As root the server runs as another user, who must be able to reach
	// its directory: use /tmp rather than a TMPDIR that may be private.
	base := ""
	if os.Geteuid() == 0 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "gatehouse-pgstore-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, log: filepath.Join(dir, "postgres.log")}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and postgres refuses to: need the unprivileged user %q (made by `apt-get install -y postgresql`): %v", "postgres", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "gatehouse", "-A", "trust", "-E", "UTF8", "--locale=C")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// A port can be taken between freePort and postgres binding it; try a
	// few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
			"-p", strconv.Itoa(s.port),
			"-k", dir,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=on",
			"-c", "synchronous_commit=on",
			"-c", "max_connections=200",
		)
		s.cmd.Dir = dir
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		// Pdeathsig: a test binary killed by a timeout takes its server
		// with it.
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start postgres: %v", err)
		}
		s.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
		err = s.waitReady(60 * time.Second)
		if err == nil {
			ok = true
			return s, nil
		}
		s.stopProcess()
		if attempt == 2 {
			logText, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("%v; server log:\n%s", err, logText)
		}
	}
}

// waitReady polls until the server accepts a connection, it exits, or the
// deadline passes.
func (s *pgServer) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, s.connString())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited during start: %v", s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v: %v", within, err)
		}
	}
}

// stop stops the server and removes its directory.
func (s *pgServer) stop() error {
	err := s.stopProcess()
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	return err
}

// stopProcess asks the server for a fast shutdown and waits for it.
func (s *pgServer) stopProcess() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		return nil
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return errors.New("postgres did not stop within 30 s of SIGINT; killed")
	}
}
