package acs

import (
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     FaultConfig
		err      bool
	}{
		{"OK", "drop=0.1,drop-mode=502,throttle=0.05,auth-fail=0.01,operator=10s,skew=-90s",
			FaultConfig{Drop: 0.1, DropMode: Drop502, Throttle: 0.05, AuthFail: 0.01, Operator: Duration(10 * time.Second), Skew: Duration(-90 * time.Second)}, false},
		{"Empty", "", FaultConfig{}, false},
		{"Alias429", "429=1", FaultConfig{Throttle: 1}, false},
		{"ErrRate", "drop=1.5", FaultConfig{}, true},
		{"ErrNaN", "drop=NaN", FaultConfig{}, true},
		{"ErrMode", "drop-mode=slow", FaultConfig{}, true},
		{"ErrUnknown", "fire=1", FaultConfig{}, true},
		{"ErrSyntax", "drop", FaultConfig{}, true},
		{"ErrDuration", "skew=soon", FaultConfig{}, true},
		{"ErrNegativeOperator", "operator=-1s", FaultConfig{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFaults(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("ParseFaults(%q) error = %v", tc.in, err)
			}
			if err == nil && got != tc.want {
				t.Errorf("ParseFaults(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if err == nil {
				back, err := ParseFaults(got.String())
				if err != nil || back != got {
					t.Errorf("String() %q does not parse back: %+v %v", got.String(), back, err)
				}
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewManualClock(t0)
	c := NewClock(m.Now)
	c.SetSkew(-time.Minute)
	m.Advance(time.Hour)
	if got, want := c.Now(), t0.Add(59*time.Minute); !got.Equal(want) {
		t.Errorf("Now = %v, want %v", got, want)
	}
}
