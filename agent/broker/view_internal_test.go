package broker

import (
	"testing"

	"github.com/pcm-mesh/pcm/rules"
)

func viewProvider() *rules.Provider {
	return &rules.Provider{ID: "p", Total: map[string]float64{"cpu": 16, "memory": 1024}, Free: map[string]float64{"cpu": 16, "memory": 1024}}
}

func TestViewAmendsAdverts(t *testing.T) {
	v := newView()
	v.awarded("p", 7, map[string]float64{"cpu": 4, "memory": 256})
	v.awarded("p", 7, map[string]float64{"cpu": 4})

	p := viewProvider()
	v.amend(p, 7)
	if p.Free["cpu"] != 8 || p.Free["memory"] != 768 {
		t.Fatalf("after two awards at advert 7: free %v, want cpu 8 memory 768", p.Free)
	}

	// A newer advert already counts those tasks: the note is dropped.
	p = viewProvider()
	v.amend(p, 8)
	if p.Free["cpu"] != 16 {
		t.Fatalf("advert 8 amended by a note on advert 7: free %v", p.Free)
	}

	// A decline for another reason says nothing about capacity.
	v.declined("p", 8, []string{"constraint: region == \"mars\""})
	p = viewProvider()
	v.amend(p, 8)
	if p.Free["cpu"] != 16 {
		t.Fatalf("non-capacity decline changed free: %v", p.Free)
	}

	v.declined("p", 8, []string{"capacity: cpu needs 1, free 0"})
	p = viewProvider()
	v.amend(p, 8)
	if p.Free["cpu"] != 0 || p.Free["memory"] != 0 {
		t.Fatalf("after a capacity decline: free %v, want none", p.Free)
	}
	if p := viewProvider(); func() bool { v.amend(p, 9); return p.Free["cpu"] != 16 }() {
		t.Fatal("a newer advert did not clear the capacity decline")
	}
}
