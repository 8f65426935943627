package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runValidate runs `<noun> validate args...` in an app holding only the
// validate commands; it returns stdout, stderr and the exit code.
func runValidate(t *testing.T, noun string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:      "pcm-agent",
		Writer:    &out,
		ErrWriter: &errOut,
		Flags:     []cli.Flag{&cli.StringFlag{Name: "output", Value: "table"}},
		Commands: []*cli.Command{
			{Name: "framework", Subcommands: []*cli.Command{frameworkValidateCommand()}},
			{Name: "task", Subcommands: []*cli.Command{taskValidateCommand()}},
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run(append([]string{"pcm-agent"}, append([]string{noun, "validate"}, args...)...))
	code := exitOK
	if err != nil {
		code = exitCode(err)
	}
	return out.String(), errOut.String(), code
}

func examples(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "testnet", "examples", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples match %s: %v", pattern, err)
	}
	return files
}

func TestFrameworkValidateExamples(t *testing.T) {
	files := examples(t, "framework-*.yaml")
	out, errOut, code := runValidate(t, "framework", files...)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, name := range []string{"general@1.0", "hpc@2.1", "ai@1.0"} {
		if !strings.Contains(out, name) {
			t.Errorf("output lacks %s:\n%s", name, out)
		}
	}
	if n := len(regexp.MustCompile(`fw1-[a-z2-7]{52}`).FindAllString(out, -1)); n != len(files) {
		t.Errorf("want %d framework ids, got %d:\n%s", len(files), n, out)
	}
}

func TestTaskValidateExamples(t *testing.T) {
	out, errOut, code := runValidate(t, "task", examples(t, "task-*.yaml")...)
	if code != exitOK || errOut != "" || strings.Count(out, "task1-") != 3 {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
}

func TestValidateBrokenCopies(t *testing.T) {
	tests := []struct {
		noun, file string
		want       []string
	}{
		{"framework", "framework-hpc.yaml", []string{
			`framework-hpc.yaml:9: templates.memory.max: unit "TX" is not a size unit`,
			`framework-hpc.yaml:13: provider_rule: CEL type error`,
			`framework-hpc.yaml:15: placement.strategy: strategy "fastest" is unknown; known: binpack, least-loaded, lowest-price, random, spread, weighted`,
		}},
		{"task", "task-gpu.yaml", []string{
			`task-gpu.yaml:7: resources.cpu: unit "GiB" is not a cpu unit`,
			`task-gpu.yaml:12: priority: unknown field "priority"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("..", "..", "testnet", "examples", "broken", tt.file)
			out, errOut, code := runValidate(t, tt.noun, path)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d", code, exitUsage)
			}
			if out != "" {
				t.Errorf("stdout should be empty for an invalid file: %q", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
				if !strings.HasPrefix(line, path+":") {
					t.Errorf("line %q does not start with %s:LINE:", line, path)
				}
			}
		})
	}
}

func TestValidateJSONAndUsage(t *testing.T) {
	good := examples(t, "framework-ai.yaml")[0]
	bad := filepath.Join("..", "..", "testnet", "examples", "broken", "framework-hpc.yaml")
	// --output is a global flag: it goes before the command.
	var buf, errBuf bytes.Buffer
	app := &cli.App{
		Writer: &buf, ErrWriter: &errBuf,
		Flags:          []cli.Flag{&cli.StringFlag{Name: "output", Value: "table"}},
		Commands:       []*cli.Command{{Name: "framework", Subcommands: []*cli.Command{frameworkValidateCommand()}}},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run([]string{"pcm-agent", "--output", "json", "framework", "validate", good, bad})
	if exitCode(err) != exitUsage {
		t.Fatalf("exit %d", exitCode(err))
	}
	var results []validateResult
	if err := json.Unmarshal(buf.Bytes(), &results); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, buf.String())
	}
	if len(results) != 2 || !results[0].Valid || results[1].Valid || len(results[1].Errors) < 3 || results[1].Errors[0].Line == 0 {
		t.Fatalf("unexpected results: %+v", results)
	}
	if _, _, code := runValidate(t, "framework"); code != exitUsage {
		t.Errorf("no files: exit %d, want %d", code, exitUsage)
	}
	if _, errOut, code := runValidate(t, "task", "does-not-exist.yaml"); code != exitUsage || !strings.Contains(errOut, "does-not-exist.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

// task validate refuses what submit refuses: a deadline in the past, and
// under the built-in framework, resources it has no template for.
func TestTaskValidateChecksLikeSubmit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ doc, want string }{
		{"name: late\nresources: {cpu: 1}\ndeadline: 2020-01-01T00:00:00Z\ncommand: [\"true\"]\n", ":3: deadline: deadline 2020-01-01T00:00:00Z has passed"},
		{"name: late-hpc\nframework: hpc\nresources: {cpu: 1}\ndeadline: 2020-01-01T00:00:00Z\ncommand: [\"true\"]\n", "deadline 2020-01-01T00:00:00Z has passed"},
	} {
		path := filepath.Join(dir, "t.yaml")
		if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runValidate(t, "task", path)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.doc, code, errOut, exitUsage, tc.want)
		}
	}
}
