package access

import "time"

// Passage is a recorded pass of a card through a door: the fact anti-passback
// reads. ZoneID and Direction are those of the door at the time.
type Passage struct {
	CardNumber CardNumber
	DoorID     ID
	ZoneID     ID
	Direction  Direction
	At         time.Time
}

// Result is the outcome of a door decision as recorded in an access event.
type Result struct {
	Grant  bool
	Reason Reason
	Mode   Mode
}

// Event is an access event (a tap and its decision) in the grow-only event
// log of its origin. Events are keyed by (Origin, Seq), with Seq assigned by
// the origin, and are never edited.
type Event struct {
	Site   ID
	Origin string
	Seq    uint64
	At     time.Time
	Door   ID
	Card   CardNumber
	Holder ID
	Result Result
}
