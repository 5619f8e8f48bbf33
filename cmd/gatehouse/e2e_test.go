//go:build e2e

package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

// binary returns the gatehouse binary built by `make e2e` (GATEHOUSE_BIN),
// or builds one into the test's temporary directory.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_BIN"); p != "" {
		return p
	}
	p := t.TempDir() + "/gatehouse"
	out, err := exec.Command("go", "build", "-o", p, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return p
}

// TestE2EDemoProcess runs `gatehouse demo` as a process, as `make demo`
// does: the console URL is printed and served, the hub sees a healthy
// 3-node site, the site's link is mutual TLS (the hub verified the site's
// certificate), and SIGINT (Ctrl-C) stops the process cleanly within 10 s.
func TestE2EDemoProcess(t *testing.T) {
	cmd := exec.Command(binary(t), "demo", "--http", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	urls := make(chan string, 1)
	var banner syncBuffer
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			t.Log("demo:", line)
			_, _ = banner.Write([]byte(line + "\n"))
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Console:" {
				urls <- f[1]
			}
		}
		exited <- cmd.Wait()
	}()
	var url string
	select {
	case url = <-urls:
	case err := <-exited:
		t.Fatalf("demo exited before printing the console URL: %v", err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no console URL within 60 s")
	}

	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "Gatehouse console") {
		t.Fatalf("console page: %q", body)
	}
	client := statusv1connect.NewStatusServiceClient(http.DefaultClient, strings.TrimSuffix(url, "/"))
	waitFor(t, "three healthy nodes", 30*time.Second, func() (bool, string) {
		st, err := client.GetStatus(context.Background(), connect.NewRequest(&statusv1.GetStatusRequest{}))
		if err != nil {
			return false, err.Error()
		}
		healthy := 0
		for _, s := range st.Msg.GetSites() {
			for _, n := range s.GetNodes() {
				if n.GetHealthy() {
					healthy++
				}
			}
		}
		return healthy == 3, st.Msg.String()
	})
	checkDemoLinkTLS(t, url, banner.String())

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo exited with %v after SIGINT, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo still running 10 s after SIGINT")
	}
}
