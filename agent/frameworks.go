package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/rules"
)

// frameworks holds the rule frameworks this agent knows: the built-in
// default, the ones published in the ledger, and local files it adheres to.
type frameworks struct {
	mu      sync.RWMutex
	byID    map[string]*rules.Framework
	adhered map[string]bool
}

func newFrameworks() *frameworks {
	def := rules.DefaultFramework()
	return &frameworks{
		byID:    map[string]*rules.Framework{def.ID(): def},
		adhered: map[string]bool{def.ID(): true},
	}
}

func (f *frameworks) add(fw *rules.Framework) {
	f.mu.Lock()
	f.byID[fw.ID()] = fw
	f.mu.Unlock()
}

// resolve finds a framework by id, name or name@version ("" = default).
func (f *frameworks) Resolve(ref string) (*rules.Framework, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if fw, ok := f.byID[ref]; ok {
		return fw, nil
	}
	var found []*rules.Framework
	for _, fw := range f.byID {
		if fw.Matches(ref) {
			found = append(found, fw)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("framework %q is not known here; publish it with `pcm-agent framework publish FILE` or name one of: %s", ref, strings.Join(f.namesLocked(), ", "))
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Version > found[j].Version })
	return found[0], nil
}

func (f *frameworks) namesLocked() []string {
	var out []string
	for _, fw := range f.byID {
		out = append(out, fw.Name+"@"+fw.Version)
	}
	sort.Strings(out)
	return out
}

func (f *frameworks) list() []*rules.Framework {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*rules.Framework, 0, len(f.byID))
	for _, fw := range f.byID {
		out = append(out, fw)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (f *frameworks) adhere(id string) {
	f.mu.Lock()
	f.adhered[id] = true
	f.mu.Unlock()
}

func (f *frameworks) Adheres(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.adhered[id]
}

func (f *frameworks) Adhered() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.adhered))
	for id := range f.adhered {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// frameworkFromRecord parses a framework-published ledger record.
func frameworkFromRecord(r consensus.Record) (*rules.Framework, error) {
	var p consensus.FrameworkPublished
	if err := json.Unmarshal(r.Payload, &p); err != nil {
		return nil, fmt.Errorf("ledger index %d: framework payload: %w", r.Index, err)
	}
	fw, err := rules.ParseFramework(fmt.Sprintf("ledger#%d", r.Index), p.Document)
	if err != nil {
		return nil, err
	}
	if fw.ID() != p.ID {
		return nil, fmt.Errorf("ledger index %d: framework document hashes to %s, not %s", r.Index, fw.ID(), p.ID)
	}
	return fw, nil
}

// loadLedgerFrameworks reads every published framework from the ledger.
func (a *Agent) loadLedgerFrameworks(ctx context.Context) {
	recs, err := a.ledger.Entries(ctx, consensus.Filter{Type: consensus.TypeFramework, Limit: 10000})
	if err != nil {
		a.log.Warn("read frameworks from the ledger", "err", err)
		return
	}
	for _, r := range recs {
		if fw, err := frameworkFromRecord(r); err == nil {
			a.fws.add(fw)
		}
	}
}

// PublishFramework commits a framework document to the ledger (signed by
// this agent), announces it on its topic and the DHT, and returns its id.
// Publishing the same document again is a no-op.
func (a *Agent) PublishFramework(ctx context.Context, fw *rules.Framework) (string, error) {
	id := fw.ID()
	// The id is the document's hash: if the ledger already holds it (from
	// any author), publishing again is a no-op.
	if rec, err := a.ledger.Entry(ctx, id); err == nil && rec.Type == consensus.TypeFramework {
		a.fws.add(fw)
		return id, nil
	}
	p := consensus.FrameworkPublished{V: consensus.PayloadVersion, ID: id, Author: a.ID(), Document: fw.Canonical(), Time: time.Now().UTC()}
	e, err := consensus.NewEntry(consensus.TypeFramework, id, p, a.deps.Identity)
	if err != nil {
		return "", err
	}
	if _, err := a.proposeRetry(ctx, e); err != nil {
		// Someone published the same document first (a different
		// author or time makes a different payload under the same id).
		if rec, rerr := a.ledger.Entries(ctx, consensus.Filter{Type: consensus.TypeFramework, Consistent: true}); rerr == nil {
			for _, r := range rec {
				if r.ID == id {
					a.fws.add(fw)
					return id, nil
				}
			}
		}
		return "", fmt.Errorf("publish framework %s: %w", fw.Name, err)
	}
	a.fws.add(fw)
	if t, err := a.node.JoinTopic("/pcm/fw/" + id + "/1.0.0"); err == nil {
		b, _ := json.Marshal(map[string]any{"v": 1, "kind": "framework_published", "id": id, "name": fw.Name, "version": fw.Version})
		_ = t.Publish(ctx, b)
	}
	return id, nil
}

// adhereConfigured makes the agent adhere to the frameworks in its config:
// an id already in the ledger, or a file that is published first.
func (a *Agent) adhereConfigured(ctx context.Context) error {
	for _, ref := range a.cfg.Frameworks {
		if data, err := os.ReadFile(ref); err == nil {
			fw, err := rules.ParseFramework(ref, data)
			if err != nil {
				return fmt.Errorf("frameworks: %w", err)
			}
			if _, err := a.PublishFramework(ctx, fw); err != nil {
				return err
			}
			a.adhere(fw.ID())
			continue
		}
		fw, err := a.fws.Resolve(ref)
		if err != nil {
			return fmt.Errorf("frameworks: %q is neither a readable file nor a published framework: %w", ref, err)
		}
		a.adhere(fw.ID())
	}
	a.node.Republish()
	return nil
}

// ledgerAPITimeout bounds API calls that must write to the ledger.
const ledgerAPITimeout = 8 * time.Second

func (a *Agent) handlePublish(w http.ResponseWriter, r *http.Request) {
	doc, err := io.ReadAll(io.LimitReader(r.Body, consensus.MaxFrameworkPayload+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if len(doc) > consensus.MaxFrameworkPayload {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("framework document is over %d bytes; the ledger takes at most %d KiB per framework", consensus.MaxFrameworkPayload, consensus.MaxFrameworkPayload>>10))
		return
	}
	fw, err := rules.ParseFramework(orDefault(r.URL.Query().Get("name"), "framework"), doc)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// Publishing needs the ledger: answer within a bounded time, 503 with
	// the reason when it has no leader.
	ctx, cancel := context.WithTimeout(r.Context(), ledgerAPITimeout)
	defer cancel()
	id, err := a.PublishFramework(ctx, fw)
	if err != nil {
		if ctx.Err() != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("the ledger did not commit the framework within %s (leader known: %q): %w; retry when the ledger has a leader (pcm-agent ledger members)", ledgerAPITimeout, a.ledger.Leader(), err))
			return
		}
		writeError(w, statusFor(err), err)
		return
	}
	if r.URL.Query().Get("adhere") == "1" {
		a.adhere(id)
		a.node.Republish()
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": id, "name": fw.Name, "version": fw.Version})
}
