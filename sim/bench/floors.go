package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

func init() {
	Default.Register(Bench{
		Name: "floors",
		Help: "physical floors: fsync latency on the data dir's filesystem, loopback TCP round trip",
		Run:  runFloors,
	})
}

// FsyncLatency writes n 4 KiB blocks to a file in dir, fsyncing after each,
// and returns the fsync durations.
func FsyncLatency(ctx context.Context, dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-floor-*")
	if err != nil {
		return nil, fmt.Errorf("fsync floor: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		block[0] = byte(i)
		if _, err := f.Write(block); err != nil {
			return nil, fmt.Errorf("fsync floor: write: %w", err)
		}
		start := time.Now()
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("fsync floor: sync: %w", err)
		}
		samples = append(samples, time.Since(start))
	}
	return samples, ctx.Err()
}

// LoopbackRTT measures n sequential 64-byte request/response round trips
// over one loopback TCP connection.
func LoopbackRTT(ctx context.Context, n int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rtt floor: %w", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("rtt floor: %w", err)
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	buf := make([]byte, 64)
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			return nil, fmt.Errorf("rtt floor: write: %w", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, fmt.Errorf("rtt floor: read: %w", err)
		}
		samples = append(samples, time.Since(start))
	}
	return samples, ctx.Err()
}

func runFloors(ctx context.Context, opt Options, emit func(Result)) error {
	nSync, nRTT := 500, 20000
	if opt.Quick {
		nSync, nRTT = 100, 2000
	}
	dir := opt.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	fs, err := FsyncLatency(ctx, dir, nSync)
	if err != nil {
		return err
	}
	// A floor is its own lower bound: ratio 1 by definition.
	for _, q := range []struct {
		name string
		q    float64
	}{{"fsync_p50_us", 0.50}, {"fsync_p99_us", 0.99}} {
		v := Micros(Percentile(fs, q.q))
		emit(NewResult("floors", q.name, v, "us", v))
	}
	rtt, err := LoopbackRTT(ctx, nRTT)
	if err != nil {
		return err
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"tcp_rtt_p50_us", 0.50}, {"tcp_rtt_p99_us", 0.99}} {
		v := Micros(Percentile(rtt, q.q))
		emit(NewResult("floors", q.name, v, "us", v))
	}
	return nil
}
