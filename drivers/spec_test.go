package drivers

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateSpec(t *testing.T) {
	ok := TaskSpec{ID: "t-1.a_b", Command: []string{"echo"}, Resources: Resources{CPUs: 1, MemoryMB: 10}}
	tests := []struct {
		name string
		edit func(*TaskSpec)
		want string // "" = valid; else a word the message must contain
	}{
		{"valid", func(*TaskSpec) {}, ""},
		{"negative cpus", func(s *TaskSpec) { s.Resources.CPUs = -1 }, "resources.cpus"},
		{"nan cpus", func(s *TaskSpec) { s.Resources.CPUs = math.NaN() }, "resources.cpus"},
		{"negative memory", func(s *TaskSpec) { s.Resources.MemoryMB = -1 }, "resources.memory_mb"},
		{"negative gpus", func(s *TaskSpec) { s.Resources.GPUs = -1 }, "resources.gpus"},
		{"gpu model without gpus", func(s *TaskSpec) { s.Resources.GPUModel = "A100" }, "gpu_model"},
		{"no command", func(s *TaskSpec) { s.Command = nil }, "exactly one of"},
		{"command and script", func(s *TaskSpec) { s.Script = "echo" }, "exactly one of"},
		{"empty program", func(s *TaskSpec) { s.Command = []string{""} }, "command[0]"},
		{"unsupported kind", func(s *TaskSpec) { s.Command, s.Image = nil, "alpine" }, "not image"},
		{"empty id", func(s *TaskSpec) { s.ID = "" }, "id is empty"},
		{"slash in id", func(s *TaskSpec) { s.ID = "a/b" }, "contains"},
		{"dotdot id", func(s *TaskSpec) { s.ID = ".." }, "reserved"},
		{"long id", func(s *TaskSpec) { s.ID = strings.Repeat("a", 129) }, "at most 128"},
		{"bad env", func(s *TaskSpec) { s.Env = map[string]string{"A=B": "1"} }, "env name"},
		{"negative timeout", func(s *TaskSpec) { s.Timeout = -1 }, "timeout"},
		{"unknown option", func(s *TaskSpec) { s.Options = map[string]string{"queue": "x"} }, `known: partition`},
		{"known option", func(s *TaskSpec) { s.Options = map[string]string{"partition": "x"} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.edit(&s)
			err := ValidateSpec(s, []string{KindCommand, KindScript}, "partition")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrInvalidSpec mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzValidateSpecID(f *testing.F) {
	for _, s := range []string{"a", "../x", "a b", "é", ".", "x.y-z_1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateSpec(TaskSpec{ID: id, Command: []string{"x"}}, []string{KindCommand})
		if err == nil && (strings.ContainsAny(id, "/\\\x00") || id == "." || id == ".." || id == "") {
			t.Fatalf("id %q accepted but is not a safe file name", id)
		}
	})
}
