package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

const journalFile = "tasks.jsonl"

// entry is one journal line: a start (with the planned outcome) or a stop.
type entry struct {
	Op        string            `json:"op"` // "start" or "stop"
	ID        string            `json:"id"`
	Time      time.Time         `json:"time"`
	Resources drivers.Resources `json:"resources,omitzero"`
	End       time.Time         `json:"end,omitzero"`
	Planned   *drivers.Status   `json:"planned,omitempty"`
	Output    string            `json:"output,omitempty"`
}

// journal appends entries to stateDir/tasks.jsonl; nil journal is a no-op.
type journal struct{ f *os.File }

func openJournal(stateDir string) (*journal, error) {
	if stateDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: create state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, journalFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sim: open journal: %w", err)
	}
	return &journal{f: f}, nil
}

// append writes e as one line with a single write (O_APPEND keeps lines
// whole even if two drivers share the file by mistake).
func (j *journal) append(e entry) error {
	if j == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = j.f.Write(append(b, '\n'))
	return err
}

func (j *journal) close() error {
	if j == nil {
		return nil
	}
	return j.f.Close()
}

// readJournal returns the entries in stateDir's journal (none if absent).
// A torn last line (crash mid-write) is ignored.
func readJournal(stateDir string) ([]entry, error) {
	if stateDir == "" {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(stateDir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sim: read journal: %w", err)
	}
	defer f.Close()
	var out []entry
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 16<<20)
	for s.Scan() {
		var e entry
		if err := json.Unmarshal(s.Bytes(), &e); err != nil {
			continue
		}
		out = append(out, e)
	}
	return out, s.Err()
}
