package drivers

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Task kinds, as listed in Fingerprint.Kinds.
const (
	KindCommand = "command"
	KindScript  = "script"
	KindImage   = "image"
)

// MaxIDLen bounds task ids; ids name files and back-end objects.
const MaxIDLen = 128

// Kind returns which form spec uses ("command", "script" or "image"), or
// "" when none or several are set.
func (spec TaskSpec) Kind() string {
	n, k := 0, ""
	if len(spec.Command) > 0 {
		n, k = n+1, KindCommand
	}
	if spec.Script != "" {
		n, k = n+1, KindScript
	}
	if spec.Image != "" {
		n, k = n+1, KindImage
	}
	if n != 1 {
		return ""
	}
	return k
}

// ValidateSpec checks what every driver requires of a spec: a file-safe
// id, non-negative finite resources, exactly one of command, script or
// image and of a kind listed in kinds, valid env names, a non-negative
// timeout, and only option keys in options. Errors wrap ErrInvalidSpec and
// name the field and the fix. Capacity is checked separately (Capacity).
func ValidateSpec(spec TaskSpec, kinds []string, options ...string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, a...)...)
	}
	if err := validateID(spec.ID); err != nil {
		return bad("%s", err)
	}
	r := spec.Resources
	switch {
	case math.IsNaN(r.CPUs) || math.IsInf(r.CPUs, 0) || r.CPUs < 0:
		return bad("task %q: resources.cpus is %g; use a number >= 0", spec.ID, r.CPUs)
	case r.MemoryMB < 0:
		return bad("task %q: resources.memory_mb is %d; use a number >= 0", spec.ID, r.MemoryMB)
	case r.DiskMB < 0:
		return bad("task %q: resources.disk_mb is %d; use a number >= 0", spec.ID, r.DiskMB)
	case r.GPUs < 0:
		return bad("task %q: resources.gpus is %d; use a number >= 0", spec.ID, r.GPUs)
	case r.GPUModel != "" && r.GPUs == 0:
		return bad("task %q: resources.gpu_model %q is set but resources.gpus is 0; request at least one GPU", spec.ID, r.GPUModel)
	case spec.Timeout < 0:
		return bad("task %q: timeout is %s; use 0 (none) or a positive duration", spec.ID, spec.Timeout)
	}
	kind := spec.Kind()
	if kind == "" {
		return bad("task %q: set exactly one of command, script or image", spec.ID)
	}
	if !slices.Contains(kinds, kind) {
		return bad("task %q: this driver runs %s tasks, not %s; use one of those forms", spec.ID, strings.Join(kinds, ", "), kind)
	}
	if kind == KindCommand && spec.Command[0] == "" {
		return bad("task %q: command[0] is empty; name the program to run", spec.ID)
	}
	for k := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("task %q: env name %q is invalid; names are non-empty without '=' or NUL", spec.ID, k)
		}
	}
	if err := validateFiles(spec); err != nil {
		return bad("task %q: %s", spec.ID, err)
	}
	for k := range spec.Options {
		if !slices.Contains(options, k) {
			known := "none"
			if len(options) > 0 {
				known = strings.Join(options, ", ")
			}
			return bad("task %q: option %q is unknown to this driver; known: %s", spec.ID, k, known)
		}
	}
	return nil
}

func validateID(id string) error {
	if id == "" {
		return fmt.Errorf("task id is empty; give the task an id")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("task id %.20q... is %d bytes; use at most %d", id, len(id), MaxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("task id %q is reserved; use letters, digits, '.', '_' or '-'", id)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("task id %q contains %q; use letters, digits, '.', '_' or '-'", id, c)
		}
	}
	return nil
}
