package drivers

import (
	"fmt"
	"math"
	"sync"
)

// Capacity is the admission ledger every driver shares: it holds the
// driver's total resources and one reservation per admitted task, and
// refuses a reservation that would exceed the total. It is safe for
// concurrent use.
//
// Invariant: the sum of reservations never exceeds Total on any dimension,
// except for reservations made with Force (used by Recover, where the
// tasks are already running and must be accounted for even if the
// configured capacity shrank).
type Capacity struct {
	mu       sync.Mutex
	total    Resources
	used     Resources
	reserved map[string]Resources
}

// NewCapacity returns a ledger offering total.
func NewCapacity(total Resources) *Capacity {
	return &Capacity{total: total, reserved: make(map[string]Resources)}
}

// Total returns the configured capacity.
func (c *Capacity) Total() Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Free returns Total minus every reservation (never negative).
func (c *Capacity) Free() Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := Resources{
		CPUs:     math.Max(0, round(c.total.CPUs-c.used.CPUs)),
		MemoryMB: max(0, c.total.MemoryMB-c.used.MemoryMB),
		DiskMB:   max(0, c.total.DiskMB-c.used.DiskMB),
		GPUs:     max(0, c.total.GPUs-c.used.GPUs),
		GPUModel: c.total.GPUModel,
	}
	return f
}

// Len returns the number of reservations.
func (c *Capacity) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reserved)
}

// Reserve admits r for task id, or returns an error wrapping ErrCapacity
// that names the first dimension that does not fit, or ErrExists if id
// already holds a reservation.
func (c *Capacity) Reserve(id string, r Resources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.reserved[id]; ok {
		return fmt.Errorf("%w: task %q already holds a reservation", ErrExists, id)
	}
	if err := c.fits(r); err != nil {
		return err
	}
	c.add(id, r)
	return nil
}

// Force records a reservation without checking the total (Recover).
func (c *Capacity) Force(id string, r Resources) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.reserved[id]; ok {
		return
	}
	c.add(id, r)
}

// Release drops id's reservation; releasing twice is a no-op.
func (c *Capacity) Release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.reserved[id]
	if !ok {
		return
	}
	delete(c.reserved, id)
	c.used.CPUs = round(c.used.CPUs - r.CPUs)
	c.used.MemoryMB -= r.MemoryMB
	c.used.DiskMB -= r.DiskMB
	c.used.GPUs -= r.GPUs
}

// Fits reports (without reserving) whether r fits in the free capacity.
func (c *Capacity) Fits(r Resources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fits(r)
}

func (c *Capacity) add(id string, r Resources) {
	c.reserved[id] = r
	c.used.CPUs = round(c.used.CPUs + r.CPUs)
	c.used.MemoryMB += r.MemoryMB
	c.used.DiskMB += r.DiskMB
	c.used.GPUs += r.GPUs
}

func (c *Capacity) fits(r Resources) error {
	t, u := c.total, c.used
	switch {
	case round(u.CPUs+r.CPUs) > t.CPUs:
		return fmt.Errorf("%w: resources.cpus %g requested, %g of %g free", ErrCapacity, r.CPUs, math.Max(0, round(t.CPUs-u.CPUs)), t.CPUs)
	case u.MemoryMB+r.MemoryMB > t.MemoryMB:
		return fmt.Errorf("%w: resources.memory_mb %d requested, %d of %d free", ErrCapacity, r.MemoryMB, max(0, t.MemoryMB-u.MemoryMB), t.MemoryMB)
	case r.DiskMB > 0 && u.DiskMB+r.DiskMB > t.DiskMB:
		return fmt.Errorf("%w: resources.disk_mb %d requested, %d of %d free", ErrCapacity, r.DiskMB, max(0, t.DiskMB-u.DiskMB), t.DiskMB)
	case r.GPUs > 0 && u.GPUs+r.GPUs > t.GPUs:
		return fmt.Errorf("%w: resources.gpus %d requested, %d of %d free", ErrCapacity, r.GPUs, max(0, t.GPUs-u.GPUs), t.GPUs)
	case r.GPUs > 0 && r.GPUModel != "" && r.GPUModel != t.GPUModel:
		return fmt.Errorf("%w: resources.gpu_model %q requested, this driver offers %q", ErrCapacity, r.GPUModel, t.GPUModel)
	}
	return nil
}

// round keeps CPU sums exact enough that 10 × 0.1 fits in 1 core.
func round(f float64) float64 { return math.Round(f*1e6) / 1e6 }
