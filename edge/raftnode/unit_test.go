package raftnode

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

func TestHLC(t *testing.T) {
	t.Run("Monotonic", func(t *testing.T) {
		wall := time.Unix(100, 0)
		c := newHLC("site-a", func() time.Time { return wall })
		prev := c.stamp()
		for i := range 100 {
			if i%10 == 0 {
				wall = wall.Add(-time.Second) // the clock steps back
			}
			s := c.stamp()
			if !less(prev, s) {
				t.Fatalf("stamp %v not after %v", s, prev)
			}
			if s.GetOrigin() != "site-a" {
				t.Fatalf("origin %q", s.GetOrigin())
			}
			prev = s
		}
	})
	t.Run("Observe", func(t *testing.T) {
		c := newHLC("site-a", func() time.Time { return time.Unix(100, 0) })
		c.observe(&accessv1.Stamp{WallUnixNano: time.Unix(200, 0).UnixNano(), Logical: 7, Origin: "hub"})
		if s := c.stamp(); s.GetWallUnixNano() != time.Unix(100, 0).UnixNano() {
			t.Errorf("observed another origin's stamp: %v", s)
		}
		ahead := &accessv1.Stamp{WallUnixNano: time.Unix(200, 0).UnixNano(), Logical: 7, Origin: "site-a"}
		c.observe(ahead)
		if s := c.stamp(); !less(ahead, s) {
			t.Errorf("stamp %v not after observed %v", s, ahead)
		}
	})
}

func less(a, b *accessv1.Stamp) bool {
	if a.GetWallUnixNano() != b.GetWallUnixNano() {
		return a.GetWallUnixNano() < b.GetWallUnixNano()
	}
	return a.GetLogical() < b.GetLogical()
}

func TestConfigValidate(t *testing.T) {
	ok := Config{NodeID: "n1", SiteID: "s", DataDir: "/tmp/x", RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1", ClusterToken: "t"}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"OK", func(*Config) {}, ""},
		{"ErrNodeIDRequired", func(c *Config) { c.NodeID = "" }, "NodeID is required"},
		{"ErrTokenRequired", func(c *Config) { c.ClusterToken = "" }, "ClusterToken is required"},
		{"ErrBootstrapAndJoin", func(c *Config) { c.Bootstrap, c.JoinAddr = true, "x:1" }, "exclusive"},
		{"ErrLeaseAboveHeartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Hour }, "LeaderLeaseTimeout"},
		{"StateStoreSized", func(c *Config) { c.StateMemTableSize, c.StateNumMemtables, c.StateBlockCacheSize = 8<<20, 1, 1<<20 }, ""},
		{"ErrMemTableTooSmall", func(c *Config) { c.StateMemTableSize = 1 << 20 }, "StateMemTableSize"},
		{"ErrNegativeMemtables", func(c *Config) { c.StateNumMemtables = -1 }, "StateNumMemtables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			case err != nil && access.ErrorCode(err) != access.Invalid:
				t.Fatalf("code %q", access.ErrorCode(err))
			}
		})
	}
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l.Named("net").With("peer", "n2").Warn("heartbeat failed", "err", errors.New("boom"))
	l.Debug("hidden")
	out := buf.String()
	for _, want := range []string{"level=WARN", "component=raft.net", "peer=n2", "err=boom", `msg="heartbeat failed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "hidden") || l.IsDebug() || !l.IsInfo() {
		t.Errorf("debug not filtered: %q", out)
	}
	l.SetLevel(hclog.Error)
	l.Warn("quiet")
	if strings.Contains(buf.String(), "quiet") {
		t.Error("SetLevel ignored")
	}
}

func TestRetryWait(t *testing.T) {
	t.Run("WokenByLeaderChange", func(t *testing.T) {
		var l leaderNews
		l.init()
		news := l.changed()
		go l.broadcast()
		// An hour's backoff: only the leader change can end this wait
		// within the test's time.
		changed, err := retryWait(t.Context(), time.Hour, news, nil)
		if err != nil || !changed {
			t.Fatalf("retryWait = %v, %v; want changed, nil", changed, err)
		}
		if l.changed() == news {
			t.Error("broadcast did not replace the channel")
		}
	})
	t.Run("Timer", func(t *testing.T) {
		var l leaderNews
		l.init()
		changed, err := retryWait(t.Context(), time.Millisecond, l.changed(), nil)
		if err != nil || changed {
			t.Fatalf("retryWait = %v, %v; want not changed, nil", changed, err)
		}
	})
	t.Run("ErrClosed", func(t *testing.T) {
		var l leaderNews
		l.init()
		stop := make(chan struct{})
		close(stop)
		if _, err := retryWait(t.Context(), time.Hour, l.changed(), stop); !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
	t.Run("Backoff", func(t *testing.T) {
		for _, tc := range []struct {
			cur     time.Duration
			changed bool
			want    time.Duration
		}{
			{retryBackoffMin, false, 2 * retryBackoffMin},
			{retryBackoffMax, false, retryBackoffMax},
			{retryBackoffMax, true, retryBackoffMin},
		} {
			if got := nextBackoff(tc.cur, tc.changed); got != tc.want {
				t.Errorf("nextBackoff(%v, %v) = %v, want %v", tc.cur, tc.changed, got, tc.want)
			}
		}
	})
}
