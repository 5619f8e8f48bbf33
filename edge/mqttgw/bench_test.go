package mqttgw_test

import (
	"strconv"
	"testing"
)

// BenchmarkTapDecision measures a tap's round trip through the embedded
// broker: a reader publishes a tap (QoS 1) and waits for its decision.
func BenchmarkTapDecision(b *testing.B) {
	s := newTestSite(b)
	g, _ := startGateway(b, s, s.siteID)
	reader := mustDial(b, g.Addr(), s.reader)
	for i := 0; b.Loop(); i++ {
		rid := "bench:" + strconv.Itoa(i)
		reader.tap(rid, s.main, cardNoGroup)
		reader.decision(rid)
	}
}
