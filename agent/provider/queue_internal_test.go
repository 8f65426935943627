package provider

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// oneFramework resolves and adheres to the default framework only.
type oneFramework struct{ fw *rules.Framework }

func (f oneFramework) Resolve(string) (*rules.Framework, error) { return f.fw, nil }
func (f oneFramework) Adheres(id string) bool                   { return id == f.fw.ID() }
func (f oneFramework) Adhered() []string                        { return []string{f.fw.ID()} }

// fixedHost is a host with 2 CPUs free whatever runs.
type fixedHost struct{}

func (fixedHost) Capacity() mesh.Advert {
	res := map[string]float64{"cpu": 2, "memory": 4 << 30}
	return mesh.Advert{Drivers: []mesh.DriverInfo{{Name: "sim", Kinds: []string{"sim"}, Total: res, Free: res}}, Total: res, Free: res}
}
func (fixedHost) Prices(*rules.Framework) map[string]int64 { return nil }
func (fixedHost) Refresh(context.Context) error            { return nil }
func (fixedHost) Republish()                               {}

// noFiles stages nothing.
type noFiles struct{}

func (noFiles) CanStage(string) bool { return false }
func (noFiles) Prepare(context.Context, consensus.Agreement, *rules.Task, *drivers.TaskSpec) error {
	return nil
}
func (noFiles) Collect(context.Context, drivers.Driver, string, consensus.Agreement, string) (*consensus.ResultsRef, error) {
	return nil, nil
}

func queueProvider(t *testing.T) *Provider {
	t.Helper()
	id, err := mesh.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return New(Deps{Identity: id, Log: slog.New(slog.DiscardHandler), Ctx: t.Context(), Go: func(f func()) { go f() },
		Drivers: map[string]drivers.Driver{"sim": nil}, Order: []string{"sim"},
		Frameworks: oneFramework{rules.DefaultFramework()}, Host: fixedHost{}, Files: noFiles{}})
}

func queueCFP(t *testing.T, id string, cpu string, expires time.Time) negotiate.CFP {
	t.Helper()
	task, err := rules.ParseTask(id+".yaml", []byte("name: "+id+"\nresources: {cpu: "+cpu+", memory: 64Mi}\ndriver: sim\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return negotiate.CFP{V: negotiate.Version, ID: id, TaskID: "t-" + id, Attempt: 1, Framework: rules.DefaultFramework().ID(),
		Task: task.Canonical(), TaskHash: task.Hash(), Expires: expires}
}

// A CFP short of capacity only because another negotiation holds it
// tentatively waits for that hold instead of declining (phantom
// capacity, issue 13); one that could never fit, or whose room does not
// come back in time, is declined with the capacity reason.
func TestCFPWaitsForATentativeHoldInsteadOfDeclining(t *testing.T) {
	p := queueProvider(t)
	soon := time.Now().Add(10 * time.Second)
	first, reasons := p.considerWaiting(queueCFP(t, "first", "2", soon))
	if first == nil {
		t.Fatalf("an idle provider declined: %v", reasons)
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		released <- time.Now()
		p.dropHold("first") // the broker released the bid
	}()
	second, reasons := p.considerWaiting(queueCFP(t, "second", "2", soon))
	if second == nil {
		t.Fatalf("a CFP waiting for a tentative hold was declined: %v", reasons)
	}
	if at := <-released; time.Now().Before(at) {
		t.Fatal("the second CFP got the capacity before the first hold was dropped")
	}

	// Held again by "second" and never released: the next CFP waits its
	// bound, then is declined for capacity.
	start := time.Now()
	h, reasons := p.considerWaiting(queueCFP(t, "third", "2", time.Now().Add(time.Second)))
	if h != nil || len(reasons) == 0 || reasons[0][:9] != "capacity:" {
		t.Fatalf("a CFP with no room got %v, %v; want a capacity decline", h, reasons)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("declined after %s, without waiting for room", waited)
	}
	// More than the provider has in all: declined without waiting.
	if h, reasons, room := p.consider(queueCFP(t, "huge", "4", soon), time.Now()); h != nil || room != nil || len(reasons) == 0 {
		t.Fatalf("a CFP that can never fit got hold %v, reasons %v, wait %v; want a decline at once", h, reasons, room != nil)
	}
}
