package runner

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Node: "http://127.0.0.1:7001", APIToken: "t", Brokers: []string{"127.0.0.1:1883"}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"OK", func(*Config) {}, ""},
		{"ErrNoNode", func(c *Config) { c.Node = "" }, "URL of an edge node"},
		{"ErrNodeNotURL", func(c *Config) { c.Node = "127.0.0.1:7001" }, "want a URL"},
		{"ErrNoToken", func(c *Config) { c.APIToken = "" }, "API token"},
		{"ErrNoBrokers", func(c *Config) { c.Brokers = nil }, "MQTT broker"},
		{"ErrEmptyBroker", func(c *Config) { c.Brokers = []string{" "} }, "empty MQTT broker"},
		{"ErrNegativeTimeout", func(c *Config) { c.DecisionTimeout = -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if _, err := New(c); (tc.want == "") != (err == nil) {
				t.Fatalf("New() = %v", err)
			}
		})
	}
}

func TestLoadConfigValidate(t *testing.T) {
	ok := LoadConfig{Readers: 3, Rate: 10, Duration: time.Second}
	for _, tc := range []struct {
		name string
		mod  func(*LoadConfig)
		want string
	}{
		{"OK", func(*LoadConfig) {}, ""},
		{"OKNoUnknown", func(c *LoadConfig) { c.Unknown = -1 }, ""},
		{"ErrReaders", func(c *LoadConfig) { c.Readers = 0 }, "readers must be 1 to 1000"},
		{"ErrTooManyReaders", func(c *LoadConfig) { c.Readers = MaxLoadReaders + 1 }, "readers must be"},
		{"ErrRate", func(c *LoadConfig) { c.Rate = 0 }, "rate must be above 0"},
		{"ErrDuration", func(c *LoadConfig) { c.Duration = 0 }, "duration must be positive"},
		{"ErrUnknown", func(c *LoadConfig) { c.Unknown = 1.5 }, "unknown share"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var ls []time.Duration
	for i := 100; i >= 1; i-- {
		ls = append(ls, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := Percentile(ls, tc.q); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if ls[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its input")
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(nil) = %v", got)
	}
	if got := Percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("Percentile of one = %v", got)
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{800 * time.Microsecond, "0.8ms"}, {3140 * time.Microsecond, "3.1ms"}, {12 * time.Millisecond, "12ms"}, {1250 * time.Millisecond, "1.25s"}} {
		if got := fmtLatency(tc.d); got != tc.want {
			t.Errorf("fmtLatency(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{15 * time.Minute, "15m"}, {time.Hour, "1h"}, {90 * time.Minute, "1h30m"}, {1500 * time.Millisecond, "1.5s"}} {
		if got := fmtDuration(tc.d); got != tc.want {
			t.Errorf("fmtDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
