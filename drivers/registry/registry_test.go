package registry

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, kind string
		raw        any
		wantErr    string
	}{
		{"local defaults", "local", nil, ""},
		{"local json", "local", json.RawMessage(`{"capacity":{"cpus":2,"memory_mb":512},"grace":"3s"}`), ""},
		{"local yaml", "local", yamlMap(t, "capacity: {cpus: 2, memory_mb: 512}\ngrace: 3s\n"), ""},
		{"local unknown key", "local", yamlMap(t, "cpu: 2\n"), `unknown field "cpu"`},
		{"local bad duration", "local", yamlMap(t, "grace: soon\n"), "soon"},
		{"sim yaml", "sim", yamlMap(t, "seed: 7\nduration: {kind: uniform, min: 1s, max: 5s}\ntime_scale: 0.01\n"), ""},
		{"sim bad probability", "sim", yamlMap(t, "failure_probability: 2\n"), "failure_probability"},
		{"exec", "exec", yamlMap(t, "command: [python3, plugin.py]\n"), ""},
		{"exec without command", "exec", nil, "command is empty"},
		{"kubernetes unknown key", "kubernetes", yamlMap(t, "no_such_key: 1\n"), "no_such_key"},
		{"slurm unknown key", "slurm", yamlMap(t, "no_such_key: 1\n"), "no_such_key"},
		{"unknown kind", "nomad", nil, "known: local, sim, exec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Build(tc.kind, tc.raw, dir, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			defer d.Close()
			if d.Name() != tc.kind {
				t.Errorf("built %q, want %q", d.Name(), tc.kind)
			}
		})
	}
}

func TestBuildAppliesConfig(t *testing.T) {
	d, err := Build("local", yamlMap(t, "capacity: {cpus: 3, memory_mb: 700, disk_mb: 10}\n"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fp.Total.CPUs != 3 || fp.Total.MemoryMB != 700 {
		t.Errorf("total %+v, want the configured 3 cpus and 700 MB", fp.Total)
	}
}

func yamlMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
