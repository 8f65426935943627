package agent

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/rules"
)

// Plan is a dry run of a submission (POST /v1/tasks/plan, `pcm-agent
// submit --plan`): the task is validated and admitted as for a submit,
// then every provider this agent knows is sorted into those that could
// take it now (in the strategy's order), those that could once capacity
// frees up, and those that never could, with the rules that rule them
// out. Nothing is queued.
type Plan struct {
	Task      string `json:"task"`
	Framework string `json:"framework"` // name@version (id)
	// Providers is how many providers this agent knows (its resource
	// table); new ones may join later.
	Providers int            `json:"providers"`
	FitsNow   []PlanProvider `json:"fits_now"`
	FitsLater []PlanProvider `json:"fits_later"`
	Never     []PlanProvider `json:"never"`
}

// PlanProvider is one provider's verdict in a Plan.
type PlanProvider struct {
	Provider string `json:"provider"`
	// Quote is the hourly price in micros (fits_now only).
	Quote int64 `json:"quote,omitempty"`
	// Reasons are the rules that rule it out (now, or for good).
	Reasons []string `json:"reasons,omitempty"`
}

// Fits reports whether any known provider could ever take the task.
func (p *Plan) Fits() bool { return len(p.FitsNow)+len(p.FitsLater) > 0 }

// PlanTask dry-runs a submission of doc (see Plan).
func (a *Agent) PlanTask(doc []byte, name string) (*Plan, error) {
	now := time.Now().UTC()
	rt, err := rules.ParseTask(name, doc)
	if err != nil {
		return nil, &SubmitError{Err: err}
	}
	fw, err := a.fws.Resolve(rt.Framework)
	if err != nil {
		return nil, &SubmitError{Err: fmt.Errorf("%s: framework: %w", name, err)}
	}
	if err := fw.Admit(rt, rules.Submitter{ID: a.ID()}, now); err != nil {
		return nil, &SubmitError{Err: err}
	}
	plan := &Plan{Task: rt.Name, Framework: fmt.Sprintf("%s@%s (%s)", fw.Name, fw.Version, fw.ID()), FitsNow: []PlanProvider{}, FitsLater: []PlanProvider{}, Never: []PlanProvider{}}
	ps := a.broker.Candidates(fw, nil)
	if _, ok := ps.ByID[a.ID()]; !ok {
		// Just started: this agent's own advert is not in its table yet,
		// but it is a provider all the same.
		self := a.provider.SelfView(fw)
		ps.List = append(ps.List, self)
		ps.ByID[self.ID] = self
	}
	plan.Providers = len(ps.List)
	nowPl := fw.Place(rt, ps.List, now)
	// "Ever": the same providers with all their capacity free.
	idle := make([]*rules.Provider, len(ps.List))
	for i, p := range ps.List {
		c := *p
		c.Free = maps.Clone(p.Total)
		idle[i] = &c
	}
	everPl := fw.Place(rt, idle, now)
	never := map[string][]string{}
	for _, ev := range everPl.Rejected {
		for _, f := range ev.Failures {
			if f.Rule == "capacity" {
				f.Detail = strings.Replace(f.Detail, ", free ", ", has in total ", 1)
			}
			never[ev.Provider] = append(never[ev.Provider], f.String())
		}
	}
	for _, s := range nowPl.Ranked {
		plan.FitsNow = append(plan.FitsNow, PlanProvider{Provider: s.Provider, Quote: s.Quote})
	}
	for _, ev := range nowPl.Rejected {
		if reasons, ok := never[ev.Provider]; ok {
			plan.Never = append(plan.Never, PlanProvider{Provider: ev.Provider, Reasons: reasons})
			continue
		}
		var reasons []string
		for _, f := range ev.Failures {
			reasons = append(reasons, f.String())
		}
		plan.FitsLater = append(plan.FitsLater, PlanProvider{Provider: ev.Provider, Reasons: reasons})
	}
	return plan, nil
}

func (a *Agent) handlePlan(w http.ResponseWriter, r *http.Request) {
	doc, err := io.ReadAll(io.LimitReader(r.Body, maxFrame+1))
	if err != nil || len(doc) > maxFrame {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("task document over %d bytes", maxFrame))
		return
	}
	plan, err := a.PlanTask(doc, orDefault(r.URL.Query().Get("name"), "task"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}
