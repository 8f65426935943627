package drivers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pcm-mesh/pcm/drivers/archive"
)

// ErrNoOutputs: the task declared no outputs, so there is nothing to collect.
var ErrNoOutputs = errors.New("task declared no outputs")

// Collector is an optional capability: a driver whose tasks run in a work
// dir it can read and write on this machine. It unpacks TaskSpec.Inputs
// into the work dir before the task starts, and packs the files that
// TaskSpec.Outputs names into one archive (package archive) after the
// task ends. Drivers without it refuse specs with inputs or outputs
// (RefuseFiles), and the agent does not bid for such tasks with them.
type Collector interface {
	// CollectOutputs writes the outputs of the finished task id to w as
	// one archive and returns the bytes written; ErrNoOutputs when its
	// spec declared none, archive.ErrTooLarge past Outputs.MaxBytes.
	CollectOutputs(ctx context.Context, id string, w io.Writer) (int64, error)
}

// Input is an archive (a local file) unpacked into the task's work dir,
// below Dir (relative; "" is the work dir itself).
type Input struct {
	Archive string `json:"archive"`
	Dir     string `json:"dir,omitempty"`
}

// Outputs are the files a task leaves: paths or globs relative to its
// work dir (a directory includes everything below it), at most MaxBytes
// of file content (0: no limit).
type Outputs struct {
	Paths    []string `json:"paths"`
	MaxBytes int64    `json:"max_bytes,omitempty"`
}

// HasFiles reports whether spec has inputs or outputs.
func (spec TaskSpec) HasFiles() bool { return len(spec.Inputs) > 0 || spec.Outputs != nil }

// RefuseFiles is what a driver without Collector calls in Start: a spec
// with inputs or outputs is an ErrInvalidSpec naming the drivers that can.
func RefuseFiles(driver string, spec TaskSpec) error {
	if !spec.HasFiles() {
		return nil
	}
	return fmt.Errorf("%w: task %q: driver %s cannot stage inputs or collect outputs; use local, exec or slurm, or drop inputs/outputs", ErrInvalidSpec, spec.ID, driver)
}

// validateFiles checks the shape of inputs and outputs.
func validateFiles(spec TaskSpec) error {
	for i, in := range spec.Inputs {
		if !filepath.IsAbs(in.Archive) {
			return fmt.Errorf("inputs[%d].archive %q is not an absolute path; give the archive's local path", i, in.Archive)
		}
		if err := checkRelDir(in.Dir); err != nil {
			return fmt.Errorf("inputs[%d].dir: %w", i, err)
		}
	}
	if o := spec.Outputs; o != nil {
		if len(o.Paths) == 0 {
			return errors.New("outputs.paths is empty; name at least one file or glob, or drop outputs")
		}
		for i, p := range o.Paths {
			if err := archive.CheckPattern(p); err != nil {
				return fmt.Errorf("outputs.paths[%d]: %w", i, err)
			}
		}
		if o.MaxBytes < 0 {
			return fmt.Errorf("outputs.max_bytes is %d; use 0 (no limit) or a positive size", o.MaxBytes)
		}
	}
	return nil
}

// checkRelDir accepts "" or a relative slash path that stays inside.
func checkRelDir(d string) error {
	if d == "" {
		return nil
	}
	if strings.HasPrefix(d, "/") || slices.Contains(strings.Split(d, "/"), "..") {
		return fmt.Errorf("%q must be relative and inside the work dir (no leading / or ..)", d)
	}
	return nil
}

// StageInputs unpacks spec's inputs into work (for Collector drivers,
// before the task starts).
func StageInputs(spec TaskSpec, work string) error {
	for i, in := range spec.Inputs {
		if err := unpackFile(in.Archive, filepath.Join(work, filepath.FromSlash(in.Dir))); err != nil {
			return fmt.Errorf("inputs[%d]: %w", i, err)
		}
	}
	return nil
}

// CollectWorkDir packs spec's outputs from work into w (for Collector drivers).
func CollectWorkDir(spec TaskSpec, work string, w io.Writer) (int64, error) {
	if spec.Outputs == nil {
		return 0, fmt.Errorf("task %q: %w", spec.ID, ErrNoOutputs)
	}
	n, err := archive.Collect(work, spec.Outputs.Paths, spec.Outputs.MaxBytes, w)
	if err != nil {
		return n, fmt.Errorf("task %q: %w", spec.ID, err)
	}
	return n, nil
}
func unpackFile(name, dir string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return archive.Unpack(bufio.NewReaderSize(f, 1<<20), dir, 0)
}
