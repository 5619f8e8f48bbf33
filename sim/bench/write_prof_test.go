package bench

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWriteProfile runs the write benchmark for profiling and logs its
// batching per level (commands per entry, log entries per write, write,
// apply and linger times per node). It is skipped unless
// GATEHOUSE_WRITE_PROFILE is set; GATEHOUSE_WRITE_LEVELS (e.g. "1,64")
// picks the client counts and GATEHOUSE_WRITE_NODES the site size (1
// isolates the write path from replication). For example:
//
//	GATEHOUSE_WRITE_PROFILE=1 GATEHOUSE_WRITE_LEVELS=64 go test ./sim/bench \
//	  -run TestWriteProfile -v -cpuprofile cpu.out
func TestWriteProfile(t *testing.T) {
	if os.Getenv("GATEHOUSE_WRITE_PROFILE") == "" {
		t.Skip("set GATEHOUSE_WRITE_PROFILE=1 to run")
	}
	oldL, oldT, oldN := writeLevels, writeTest, writeNodes
	t.Cleanup(func() { writeLevels, writeTest, writeNodes = oldL, oldT, oldN })
	if s := os.Getenv("GATEHOUSE_WRITE_LEVELS"); s != "" {
		writeLevels = nil
		for _, f := range strings.Split(s, ",") {
			c, err := strconv.Atoi(f)
			if err != nil || c < 1 {
				t.Fatalf("GATEHOUSE_WRITE_LEVELS: bad level %q", f)
			}
			writeLevels = append(writeLevels, c)
		}
	}
	if s := os.Getenv("GATEHOUSE_WRITE_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("GATEHOUSE_WRITE_NODES: bad size %q", s)
		}
		writeNodes = n
	}
	writeTest = &writeParams{warm: 500 * time.Millisecond, window: 3 * time.Second, fencing: 300 * time.Millisecond, fsyncN: 100}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	err := runWrite(context.Background(), Options{Quick: true, Dir: t.TempDir(), Log: log}, func(r Result) { t.Logf("%+v", r) })
	if err != nil {
		t.Fatal(err)
	}
}
