package drivers

import "sync"

// Observers is a list of Event subscribers a driver embeds to implement
// Observable. Emit calls every subscriber synchronously, in order; a
// subscriber must not call back into the driver.
type Observers struct {
	mu  sync.RWMutex
	fns []func(Event)
}

// Observe adds fn.
func (o *Observers) Observe(fn func(Event)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fns = append(o.fns, fn)
}

// Emit delivers ev to every subscriber.
func (o *Observers) Emit(ev Event) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, fn := range o.fns {
		fn(ev)
	}
}
