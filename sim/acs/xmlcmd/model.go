package xmlcmd

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// state is everything the simulator holds; it is saved as JSON.
type state struct {
	People    map[string]*person `json:"people"` // by PERSONID
	NextKey   int64              `json:"next_key"`
	Levels    []level            `json:"levels"`
	Formats   []cardFormat       `json:"formats"`
	Statuses  []string           `json:"statuses"`
	Portals   []*portal          `json:"portals"`
	Events    []accessEvent      `json:"events"`
	NextLogID int64              `json:"next_log_id"`
}

type person struct {
	Key      int64             `json:"key"`
	PersonID string            `json:"person_id"`
	First    string            `json:"first"`
	Last     string            `json:"last"`
	ActDate  time.Time         `json:"act_date"`
	ExpDate  time.Time         `json:"exp_date"`
	UDF      map[string]string `json:"udf"`
	Levels   []string          `json:"levels"`
	Deleted  bool              `json:"deleted"`
	Cards    []*credential     `json:"cards"`
	LastMod  time.Time         `json:"last_mod"`
}

type credential struct {
	EncodedNum string `json:"encoded_num"`
	Hotstamp   string `json:"hotstamp"`
	Format     string `json:"format"`
	Status     string `json:"status"`
	Disabled   bool   `json:"disabled"`
}

type level struct {
	Key  int64  `json:"key"`
	Name string `json:"name"`
}

type cardFormat struct {
	Name string `json:"name"`
	Bits int    `json:"bits"`
	Max  int64  `json:"max"`
}

type portal struct {
	Key     int64    `json:"key"`
	Name    string   `json:"name"`
	Locked  bool     `json:"locked"`
	Readers []reader `json:"readers"`
}

type reader struct {
	Key  int64  `json:"key"`
	Name string `json:"name"`
}

type accessEvent struct {
	LogID       int64     `json:"log_id"`
	Time        time.Time `json:"time"`
	PersonID    string    `json:"person_id"`
	Portal      int64     `json:"portal"`
	Reader      string    `json:"reader"`
	Type        string    `json:"type"`
	Reason      string    `json:"reason"`
	Description string    `json:"description"`
}

// newState returns the starting site: access levels, card formats, card
// statuses, portals with readers, and n synthetic people.
func newState(rng *rand.Rand, n int, now time.Time) *state {
	st := &state{People: map[string]*person{}, NextKey: 1, NextLogID: 1}
	for i, name := range []string{"All Staff", "Lobby 24x7", "Floor 1 Business Hours", "Floor 2 Business Hours", "Server Room", "Visitor Escorted"} {
		st.Levels = append(st.Levels, level{Key: int64(i + 1), Name: name})
	}
	st.Formats = []cardFormat{{"26 bit Wiegand", 26, 65535}, {"HID Corporate 1000", 35, 1048575}, {"37 bit H10302", 37, 34359738367}}
	st.Statuses = []string{"Active", "Disabled", "Lost", "Stolen", "Returned"}
	for i, name := range []string{"Lobby Entrance", "Floor 1", "Floor 2", "Server Room"} {
		k := int64(i + 1)
		st.Portals = append(st.Portals, &portal{Key: k, Name: name, Locked: true, Readers: []reader{
			{Key: k*10 + 1, Name: name + " In"}, {Key: k*10 + 2, Name: name + " Out"}}})
	}
	first := []string{"Ada", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hugo"}
	last := []string{"Okafor", "Smith", "Nguyen", "Garcia", "Rossi", "Tanaka", "Haddad", "Silva"}
	for i := 0; i < n; i++ {
		p := &person{Key: st.NextKey, PersonID: fmt.Sprintf("SYN-%05d", i+1), First: first[rng.IntN(len(first))],
			Last: last[rng.IntN(len(last))], UDF: map[string]string{}, Levels: []string{"All Staff"}, LastMod: now}
		p.Cards = []*credential{{EncodedNum: fmt.Sprint(2000 + i), Format: "26 bit Wiegand", Status: "Active"}}
		st.NextKey++
		st.People[p.PersonID] = p
	}
	return st
}

func (st *state) fix() {
	if st.People == nil {
		st.People = map[string]*person{}
	}
	for _, p := range st.People {
		if p.UDF == nil {
			p.UDF = map[string]string{}
		}
	}
}

// appendEvent appends e to the ring, overwriting the oldest when full.
func (st *state) appendEvent(max int, e accessEvent) {
	e.LogID = st.NextLogID
	st.NextLogID++
	st.Events = append(st.Events, e)
	if len(st.Events) > max {
		st.Events = append([]accessEvent(nil), st.Events[len(st.Events)-max:]...)
	}
}

func (st *state) hasLevel(name string) bool {
	for _, l := range st.Levels {
		if l.Name == name {
			return true
		}
	}
	return false
}

func (st *state) format(name string) *cardFormat {
	for i := range st.Formats {
		if st.Formats[i].Name == name {
			return &st.Formats[i]
		}
	}
	return nil
}

func (st *state) portal(key int64) *portal {
	for _, p := range st.Portals {
		if p.Key == key {
			return p
		}
	}
	return nil
}
