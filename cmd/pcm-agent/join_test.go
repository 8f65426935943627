package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
)

func runApp(t *testing.T, args ...string) error {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	return app.Run(append([]string{"pcm-agent"}, args...))
}

// join refuses to start on a bad config field or a corrupt identity, and
// says which file or field.
func TestJoinRefusesBadConfigAndKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("region: cn-north\nadvert_interval: often\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runApp(t, "--data-dir", filepath.Join(dir, "data"), "join", "--config", cfg, "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "advert_interval") {
		t.Fatalf("bad config: err = %v, want the file and the field", err)
	}
	if exitCode(err) != exitUsage {
		t.Errorf("bad config: exit code %d, want %d", exitCode(err), exitUsage)
	}

	data := filepath.Join(dir, "data2")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(data, "identity.key")
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = runApp(t, "--data-dir", data, "join", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("corrupt key: err = %v, want it to name %s", err, key)
	}
	if b, _ := os.ReadFile(key); string(b) != "not a key" {
		t.Fatal("the corrupt key was replaced")
	}

	err = runApp(t, "--data-dir", filepath.Join(dir, "data3"), "join", "--api-listen", "0.0.0.0:8999", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "api_token") {
		t.Fatalf("open API: err = %v, want it to ask for a token", err)
	}

	err = runApp(t, "--data-dir", filepath.Join(dir, "data4"), "join", "--reachability", "sometimes", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "nat.reachability") || exitCode(err) != exitUsage {
		t.Fatalf("bad --reachability: err = %v (exit %d), want a usage error naming nat.reachability", err, exitCode(err))
	}
}

// id never creates an identity by itself; with --init it does, once, and
// shows the same id after.
func TestIDInit(t *testing.T) {
	dir := t.TempDir()
	api := "http://127.0.0.1:1" // nothing listens there
	if err := runApp(t, "--api", api, "--data-dir", dir, "id"); exitCode(err) != exitUnavailable {
		t.Fatalf("id on an empty data dir: %v (exit %d), want exit %d", err, exitCode(err), exitUnavailable)
	}
	if _, err := os.Stat(filepath.Join(dir, "identity.key")); err == nil {
		t.Fatal("id without --init created an identity")
	}
	if err := runApp(t, "--api", api, "--data-dir", dir, "id", "--init"); err != nil {
		t.Fatalf("id --init: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "identity.key"))
	if err != nil {
		t.Fatalf("id --init wrote no identity: %v", err)
	}
	if err := runApp(t, "--api", api, "--data-dir", dir, "id", "--init"); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "identity.key")); string(again) != string(key) {
		t.Fatal("a second id --init replaced the identity")
	}
}

// join --help shows each default once and lists every driver.
func TestJoinHelp(t *testing.T) {
	out, _, err := pcm(t, "join", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "(default") != strings.Count(out, "(default: ") {
		t.Errorf("a default is given in the usage text too:\n%s", out)
	}
	for _, want := range []string{"local, sim, slurm, kubernetes, exec", "(default: 10s)", "(default: 3)"} {
		if !strings.Contains(out, want) {
			t.Errorf("join --help lacks %q:\n%s", want, out)
		}
	}
}

// --driver chooses the drivers that run and keeps the settings the config
// file gives them (testnet/load.sh passes --driver sim with a file that
// sets drivers.sim.time_scale).
func TestJoinDriverFlagKeepsFileSettings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(file, []byte("drivers:\n  sim:\n    time_scale: 0.001\n  local: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want map[string]string // driver → its settings as JSON
	}{
		{"file only", nil, map[string]string{"sim": `{"time_scale":0.001}`, "local": `{}`}},
		{"flag keeps the file's settings", []string{"--driver", "sim"}, map[string]string{"sim": `{"time_scale":0.001}`}},
		{"flag adds a driver with defaults", []string{"--driver", "sim", "--driver", "slurm"}, map[string]string{"sim": `{"time_scale":0.001}`, "slurm": `{}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newApp()
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			var got agent.Config
			for _, cmd := range app.Commands {
				if cmd.Name == "join" {
					cmd.Action = func(c *cli.Context) error {
						var err error
						got, err = joinConfig(c)
						return err
					}
				}
			}
			args := append([]string{"pcm-agent", "--data-dir", dir, "join", "--config", file}, tt.args...)
			if err := app.Run(args); err != nil {
				t.Fatal(err)
			}
			if len(got.Drivers) != len(tt.want) {
				t.Errorf("drivers %v, want %v", slices.Sorted(maps.Keys(got.Drivers)), slices.Sorted(maps.Keys(tt.want)))
			}
			for name, want := range tt.want {
				b, err := driverJSON(name, got.Drivers[name])
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != want {
					t.Errorf("drivers.%s = %s, want %s", name, b, want)
				}
			}
		})
	}
}
