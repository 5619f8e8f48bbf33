package site

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Rules a device can break; each Violation names one.
const (
	RuleAuth            = "auth"             // refused connection: bad user name, unknown device, bad password, client ID
	RuleSession         = "clean_session"    // connected without a clean session
	RuleWill            = "last_will"        // no last will, or one with the wrong topic, QoS, retain flag or payload
	RuleKeepAlive       = "keep_alive"       // keep alive 0 or above 30 s
	RuleACLPublish      = "acl_publish"      // published outside its own device-to-site topics
	RuleACLSubscribe    = "acl_subscribe"    // subscribed outside its own site-to-device topics
	RuleSubscribeQoS    = "subscribe_qos"    // subscribed with QoS 0
	RuleQoS             = "qos"              // published with a QoS other than 1
	RuleRetain          = "retain"           // state not retained, or another channel retained
	RuleMalformed       = "malformed"        // payload refused by the decoder
	RuleNoState         = "no_state"         // no online state within the heartbeat interval after connecting
	RuleStateOrder      = "state_order"      // online state published before subscribing to its topics
	RuleStateRefresh    = "state_refresh"    // a CAN controller sent no state for longer than the interval
	RuleSeqGap          = "seq_gap"          // an event skipped sequence numbers or came out of order
	RuleSeqReplay       = "seq_replay"       // an event replayed with different content, or last_seq going back
	RuleGapUnfilled     = "gap_unfilled"     // a gap never filled after the resend request
	RuleRequestReused   = "request_id_reuse" // a tap request ID reused for another tap
	RuleDoorNotServed   = "door_not_served"  // a tap or state for a door the device does not serve
	RuleCacheRejected   = "cache_rejected"   // a full offline cache refused
	RuleCacheReport     = "cache_not_reported"
	RuleModeReport      = "mode_not_reported"
	RuleNoAnswer        = "no_answer"        // a dispenser command never answered
	RuleAnswer          = "bad_answer"       // an answer to no command, or not matching it
	RuleOfflineDecision = "offline_decision" // no offline decision after the decision timeout, or a wrong one
	RuleCANFrame        = "can_frame"        // a frame or message refused on the CAN bus
	RuleUnknownDevice   = "unknown_device"   // a CAN address the site file does not name
)

// Entry is one line of the timeline.
type Entry struct {
	// At is the time since the start of the run.
	At time.Duration
	// Device is KIND/ID, or "site".
	Device string
	// Dir is "<-" for a message from the device, "->" for one to it, and
	// "--" for anything else (connections, notes).
	Dir string
	// Channel is the MQTT channel or CAN message type, or "conn".
	Channel string
	// Summary says what the message was.
	Summary string
}

// String returns e as the timeline prints it.
func (e Entry) String() string {
	return fmt.Sprintf("%9.3fs  %-22s %s %-8s %s", e.At.Seconds(), e.Device, e.Dir, e.Channel, e.Summary)
}

// Violation is a breach of the protocol by a device.
type Violation struct {
	// At is the time since the start of the run.
	At time.Duration
	// Device is KIND/ID, or what the device called itself when it could
	// not be identified.
	Device string
	// Rule is one of the Rule constants.
	Rule string
	// Detail says what happened.
	Detail string
}

// String returns v as the timeline prints it.
func (v Violation) String() string {
	return fmt.Sprintf("%9.3fs  %-22s !! VIOLATION %s: %s", v.At.Seconds(), v.Device, v.Rule, v.Detail)
}

// DeviceSummary counts what one device did.
type DeviceSummary struct {
	// Device is KIND/ID; Transport is "mqtt" or "can".
	Device    string
	Transport string
	// Connects counts accepted connections (MQTT) or comings online
	// (CAN); Refused counts refused connections.
	Connects, Refused int
	// In and Out count messages from and to the device.
	In, Out int
	// Taps counts taps (repeats included), Events events recorded once.
	Taps, Events int
	// LastSeq is the last event sequence number recorded without a gap.
	LastSeq uint64
	// Online says whether the device was online at the end.
	Online bool
	// NotSimulated counts requests answered with "not simulated".
	NotSimulated int
	// Violations counts its violations.
	Violations int
}

// Report is the conformance report of a run: the timeline, the
// violations and a summary per device. It is a copy, safe to keep.
type Report struct {
	// Site is the site's ID.
	Site string
	// Entries is the timeline.
	Entries []Entry
	// Violations lists every violation in the order seen.
	Violations []Violation
	// Devices summarises each device of the site file, in file order,
	// then any other identity that tried to connect.
	Devices []DeviceSummary
	// Ended is true once the run is over (Site.Close).
	Ended bool
}

// OK reports whether the run had no violation.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// Has reports whether r has a violation of rule by device (any device
// when device is empty).
func (r *Report) Has(device, rule string) bool {
	for _, v := range r.Violations {
		if v.Rule == rule && (device == "" || v.Device == device) {
			return true
		}
	}
	return false
}

// Find returns the entries of device (any when empty) whose channel is
// channel (any when empty) and whose summary contains text.
func (r *Report) Find(device, channel, text string) []Entry {
	var out []Entry
	for _, e := range r.Entries {
		if (device == "" || e.Device == device) && (channel == "" || e.Channel == channel) && strings.Contains(e.Summary, text) {
			out = append(out, e)
		}
	}
	return out
}

// WriteSummary writes the summary table per device and the violations to
// w.
func (r *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DEVICE\tVIA\tCONNECTS\tREFUSED\tIN\tOUT\tTAPS\tEVENTS\tLAST SEQ\tONLINE\tNOT SIMULATED\tVIOLATIONS\n")
	for _, d := range r.Devices {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\n", d.Device, d.Transport, d.Connects, d.Refused,
			d.In, d.Out, d.Taps, d.Events, d.LastSeq, yesNo(d.Online), d.NotSimulated, d.Violations)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Violations) == 0 {
		_, err := fmt.Fprintf(w, "\nsite %s: no violations\n", r.Site)
		return err
	}
	fmt.Fprintf(w, "\nsite %s: %d violations\n", r.Site, len(r.Violations))
	for _, v := range r.Violations {
		if _, err := fmt.Fprintf(w, "  %s\n", strings.TrimSpace(v.String())); err != nil {
			return err
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
