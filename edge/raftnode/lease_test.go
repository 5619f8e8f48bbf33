package raftnode

import (
	"slices"
	"testing"
	"time"
)

// TestLeaseBook checks the leader's accounting of follower leases: a voter
// is waited for until it reports the fenced index or its lease has
// certainly run out, counting leases an earlier leader may have granted.
func TestLeaseBook(t *testing.T) {
	const lease, margin = time.Second, 100 * time.Millisecond
	t0 := time.Unix(1000, 0)
	var b leaseBook
	b.ensure(7, t0, 10)

	// A follower behind the term's starting fence is refused.
	if granted, fence := b.renew("a", 9, t0); granted || fence != 10 {
		t.Fatalf("renew behind fence: granted=%v fence=%d", granted, fence)
	}
	if granted, _ := b.renew("a", 10, t0.Add(100*time.Millisecond)); !granted {
		t.Fatal("renew at fence refused")
	}
	b.raise(20)
	voters := []string{"a", "b"}

	// Early in the term everyone is pending: an earlier leader's grants may
	// still be alive until since + 2·lease (stretched by the margin).
	left, next, _ := b.pending(voters, 20, t0.Add(time.Second), lease, margin)
	if !slices.Equal(left, []string{"a", "b"}) {
		t.Fatalf("pending = %v, want both", left)
	}
	if want := t0.Add(2*lease + 2*margin); !next.Equal(want) {
		t.Fatalf("next = %v, want %v", next, want)
	}
	// a reports the index: only b is left.
	b.renew("a", 20, t0.Add(1500*time.Millisecond))
	left, _, _ = b.pending(voters, 20, t0.Add(1600*time.Millisecond), lease, margin)
	if !slices.Equal(left, []string{"b"}) {
		t.Fatalf("pending = %v, want [b]", left)
	}
	// b never renewed with this leader: fenced after since + 2.2 s.
	left, _, _ = b.pending(voters, 20, t0.Add(2200*time.Millisecond), lease, margin)
	if len(left) != 0 {
		t.Fatalf("pending after b's lease certainly ended = %v", left)
	}

	// A grant late in the term extends the wait to lastGrant + lease.
	b.renew("b", 20, t0.Add(5*time.Second)) // b at fence: granted
	b.raise(30)
	left, next, _ = b.pending(voters, 30, t0.Add(5500*time.Millisecond), lease, margin)
	// a's last grant was at 1.5 s: its lease is long over.
	if !slices.Equal(left, []string{"b"}) {
		t.Fatalf("pending = %v, want [b]", left)
	}
	if want := t0.Add(5*time.Second + lease + margin); !next.Equal(want) {
		t.Fatalf("next = %v, want %v", next, want)
	}
	// A renewal below the fence is refused and records nothing new.
	if granted, _ := b.renew("b", 25, t0.Add(5600*time.Millisecond)); granted {
		t.Fatal("renewal below the raised fence granted")
	}
	left, _, _ = b.pending(voters, 30, t0.Add(6200*time.Millisecond), lease, margin)
	if len(left) != 0 {
		t.Fatalf("pending after b's last grant expired = %v", left)
	}

	// A new term resets the book, keeping nothing of the old one.
	b.ensure(8, t0.Add(10*time.Second), 40)
	if granted, fence := b.renew("a", 30, t0.Add(10*time.Second)); granted || fence != 40 {
		t.Fatalf("new term: granted=%v fence=%d, want refused at 40", granted, fence)
	}
}
