package mesh

import (
	"sort"
	"sync"
	"time"
)

// Entry is one provider's latest advert and when it expires here.
type Entry struct {
	Advert   *Advert   `json:"advert"`
	Received time.Time `json:"received"`
	Expires  time.Time `json:"expires"`
}

// Table is the resource table: the latest advert per provider, dropped once
// its TTL has passed (measured on the local clock from receipt).
type Table struct {
	now func() time.Time

	mu       sync.RWMutex
	entries  map[string]Entry
	watchers map[int]func(Change)
	nextW    int
}

// Change tells a watcher that a provider appeared, updated or expired.
type Change struct {
	Provider string
	Advert   *Advert // nil when Expired
	Expired  bool
}

// NewTable makes an empty table using now as its clock (nil: time.Now).
func NewTable(now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	return &Table{now: now, entries: map[string]Entry{}, watchers: map[int]func(Change){}}
}

// Put stores a (validated) advert if it is newer than the one held.
func (t *Table) Put(a *Advert) {
	now := t.now()
	t.mu.Lock()
	if old, ok := t.entries[a.Provider]; ok && old.Advert.Seq >= a.Seq {
		t.mu.Unlock()
		return
	}
	t.entries[a.Provider] = Entry{Advert: a, Received: now, Expires: now.Add(a.TTL())}
	ws := t.watcherList()
	t.mu.Unlock()
	for _, w := range ws {
		w(Change{Provider: a.Provider, Advert: a})
	}
}

// Get returns a live provider's entry.
func (t *Table) Get(provider string) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.entries[provider]
	if !ok || !t.now().Before(e.Expires) {
		return Entry{}, false
	}
	return e, true
}

// List returns the live entries matching every key=value in attrs (nil or
// empty: all), sorted by provider id.
func (t *Table) List(attrs map[string]string) []Entry {
	now := t.now()
	t.mu.RLock()
	out := make([]Entry, 0, len(t.entries))
	for _, e := range t.entries {
		if now.Before(e.Expires) && matches(e.Advert, attrs) {
			out = append(out, e)
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Advert.Provider < out[j].Advert.Provider })
	return out
}

func matches(a *Advert, attrs map[string]string) bool {
	for k, v := range attrs {
		if k == "driver" {
			if !a.HasDriver(v) {
				return false
			}
			continue
		}
		if a.Attrs[k] != v {
			return false
		}
	}
	return true
}

// Len counts live entries.
func (t *Table) Len() int { return len(t.List(nil)) }

// Expire removes entries past their TTL and tells watchers.
func (t *Table) Expire() {
	now := t.now()
	var gone []string
	t.mu.Lock()
	for id, e := range t.entries {
		if !now.Before(e.Expires) {
			delete(t.entries, id)
			gone = append(gone, id)
		}
	}
	ws := t.watcherList()
	t.mu.Unlock()
	for _, id := range gone {
		for _, w := range ws {
			w(Change{Provider: id, Expired: true})
		}
	}
}

// Watch calls fn for every change (outside the table's lock); the returned
// function stops it.
func (t *Table) Watch(fn func(Change)) (stop func()) {
	t.mu.Lock()
	id := t.nextW
	t.nextW++
	t.watchers[id] = fn
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.watchers, id)
		t.mu.Unlock()
	}
}

func (t *Table) watcherList() []func(Change) {
	ws := make([]func(Change), 0, len(t.watchers))
	for _, w := range t.watchers {
		ws = append(ws, w)
	}
	return ws
}
