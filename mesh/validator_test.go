package mesh

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func testAdvert(t *testing.T, provider string, seq uint64, at time.Time) *Advert {
	t.Helper()
	return testAdvertF(provider, seq, at)
}

func testAdvertF(provider string, seq uint64, at time.Time) *Advert {
	return &Advert{
		V: AdvertVersion, Provider: provider, Seq: seq, Time: at, TTLSeconds: 30,
		Drivers: []DriverInfo{{Name: "local"}},
		Total:   map[string]float64{"cpu": 4, "memory": 8192},
		Free:    map[string]float64{"cpu": 4, "memory": 8192},
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidator(t *testing.T) {
	alice, _ := GenerateIdentity()
	mallory, _ := GenerateIdentity()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	v := NewValidator(time.Minute, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))

	valid := mustJSON(t, testAdvert(t, alice.ID(), 10, now))
	huge := testAdvert(t, alice.ID(), 11, now)
	huge.Attrs = map[string]string{"junk": strings.Repeat("x", MaxAdvertSize)}
	noDrivers := testAdvert(t, alice.ID(), 12, now)
	noDrivers.Drivers = nil
	negative := testAdvert(t, alice.ID(), 12, now)
	negative.Free["cpu"] = -1

	tests := []struct {
		name   string
		from   peer.ID
		data   []byte
		reason string
	}{
		{"valid", alice.PeerID(), valid, ""},
		{"replayed same seq", alice.PeerID(), valid, ReasonReplayed},
		{"older seq", alice.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), 9, now)), ReasonReplayed},
		{"forged signer", mallory.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), 20, now)), ReasonSigner},
		{"oversized", alice.PeerID(), mustJSON(t, huge), ReasonOversized},
		{"not json", alice.PeerID(), []byte("{nope"), ReasonMalformed},
		{"missing drivers", alice.PeerID(), mustJSON(t, noDrivers), ReasonMalformed},
		{"negative capacity", alice.PeerID(), mustJSON(t, negative), ReasonMalformed},
		{"wrong version", alice.PeerID(), []byte(`{"v":9}`), ReasonMalformed},
		{"from the future", alice.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), 30, now.Add(time.Hour))), ReasonClock},
		{"stale", alice.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), 31, now.Add(-time.Hour))), ReasonClock},
		{"newer valid", alice.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), 40, now)), ""},
		{"other provider valid", mallory.PeerID(), mustJSON(t, testAdvert(t, mallory.ID(), 1, now)), ""},
	}
	want := map[string]uint64{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, reason := v.check(tc.from, tc.data)
			if reason != tc.reason {
				t.Fatalf("reason = %q, want %q", reason, tc.reason)
			}
			if reason == "" && a == nil {
				t.Fatal("accepted advert not returned")
			}
			if reason != "" {
				v.count(reason)
				want[reason]++
			}
		})
	}
	st := v.Stats()
	if st.Accepted != 3 {
		t.Errorf("accepted = %d, want 3", st.Accepted)
	}
	for r, n := range want {
		if st.Rejected[r] != n {
			t.Errorf("rejected[%s] = %d, want %d", r, st.Rejected[r], n)
		}
	}
}

func TestTableExpiresAndFilters(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tb := NewTable(func() time.Time { return now })
	a, _ := GenerateIdentity()
	b, _ := GenerateIdentity()
	adA := testAdvert(t, a.ID(), 1, now)
	adA.Attrs = map[string]string{"region": "cn-north"}
	adB := testAdvert(t, b.ID(), 1, now)
	adB.TTLSeconds = 60
	adB.Attrs = map[string]string{"region": "eu-west"}
	var expired []string
	tb.Watch(func(c Change) {
		if c.Expired {
			expired = append(expired, c.Provider)
		}
	})
	tb.Put(adA)
	tb.Put(adB)
	if got := len(tb.List(nil)); got != 2 {
		t.Fatalf("len = %d, want 2", got)
	}
	if got := tb.List(map[string]string{"region": "eu-west"}); len(got) != 1 || got[0].Advert.Provider != b.ID() {
		t.Fatalf("filter region=eu-west = %v", got)
	}
	if got := tb.List(map[string]string{"driver": "slurm"}); len(got) != 0 {
		t.Fatalf("filter driver=slurm = %v", got)
	}
	old := testAdvert(t, a.ID(), 0, now) // lower seq never replaces
	old.Attrs = map[string]string{"region": "old"}
	tb.Put(old)
	if e, _ := tb.Get(a.ID()); e.Advert.Attrs["region"] != "cn-north" {
		t.Fatal("older advert replaced a newer one")
	}
	now = now.Add(31 * time.Second)
	if _, ok := tb.Get(a.ID()); ok {
		t.Fatal("advert past its TTL still served")
	}
	tb.Expire()
	if len(expired) != 1 || expired[0] != a.ID() {
		t.Fatalf("expired = %v, want [%s]", expired, a.ID())
	}
	if got := len(tb.List(nil)); got != 1 {
		t.Fatalf("len after expiry = %d, want 1", got)
	}
}

// TestValidatorRateLimitsEachProvider: a provider flooding valid adverts
// gets AdvertBurst through, then AdvertRate per second; another provider
// is not affected.
func TestValidatorRateLimitsEachProvider(t *testing.T) {
	alice, _ := GenerateIdentity()
	bob, _ := GenerateIdentity()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	v := NewValidator(time.Minute, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	accepted, limited := 0, 0
	for seq := uint64(1); seq <= 1000; seq++ {
		_, reason := v.check(alice.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), seq, now)))
		switch reason {
		case "":
			accepted++
		case ReasonRate:
			limited++
		default:
			t.Fatalf("advert %d: %s", seq, reason)
		}
	}
	if accepted != int(AdvertBurst) || limited != 1000-int(AdvertBurst) {
		t.Fatalf("flood of 1000 at one instant: %d accepted, %d limited; want %d accepted", accepted, limited, int(AdvertBurst))
	}
	if _, reason := v.check(bob.PeerID(), mustJSON(t, testAdvert(t, bob.ID(), 1, now))); reason != "" {
		t.Fatalf("another provider's advert: %s", reason)
	}
	now = now.Add(time.Second) // refills AdvertRate tokens
	accepted = 0
	for seq := uint64(2000); seq < 2100; seq++ {
		if _, reason := v.check(alice.PeerID(), mustJSON(t, testAdvert(t, alice.ID(), seq, now))); reason == "" {
			accepted++
		}
	}
	if accepted != int(AdvertRate) {
		t.Fatalf("one second later: %d accepted, want %d", accepted, int(AdvertRate))
	}
}
