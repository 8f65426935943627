package drivers

import "strings"

// Resource classes: the keys of capacity in adverts and of resources in
// task documents and rules. A GPU of a named model is also counted under
// "gpu:<model>".
const (
	ClassCPU     = "cpu"
	ClassMemory  = "memory"  // MiB
	ClassStorage = "storage" // MiB
	ClassGPU     = "gpu"
)

// Classes is r as resource classes.
func (r Resources) Classes() map[string]float64 {
	m := map[string]float64{ClassCPU: r.CPUs, ClassMemory: float64(r.MemoryMB)}
	if r.DiskMB > 0 {
		m[ClassStorage] = float64(r.DiskMB)
	}
	if r.GPUs > 0 {
		m[ClassGPU] = float64(r.GPUs)
		if r.GPUModel != "" {
			m[ClassGPU+":"+r.GPUModel] = float64(r.GPUs)
		}
	}
	return m
}

// ResourcesOf is what a task asking for classes needs of a driver.
func ResourcesOf(classes map[string]float64) Resources {
	r := Resources{CPUs: classes[ClassCPU], MemoryMB: int64(classes[ClassMemory]), DiskMB: int64(classes[ClassStorage])}
	for k, v := range classes {
		if k == ClassGPU {
			r.GPUs = int(v)
		} else if model, ok := strings.CutPrefix(k, ClassGPU+":"); ok {
			r.GPUs, r.GPUModel = int(v), model
		}
	}
	return r
}
