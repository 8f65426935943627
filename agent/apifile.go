package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// APIFile is the file in the data dir where a running agent records how
// to reach its API, so `pcm-agent --data-dir DIR <command>` talks to the
// agent that owns DIR rather than to whatever answers on the default port.
// It is written once the API listens and removed by Close.
const APIFile = "api.json"

// APIFileInfo is the content of APIFile.
type APIFileInfo struct {
	// URL is the API's base URL, e.g. http://127.0.0.1:8999 (an
	// unspecified listen address is written as loopback).
	URL string `json:"url"`
	// PeerID is the agent's peer id; a client checks that the agent
	// answering on URL reports the same id before trusting the file.
	PeerID string `json:"peer_id"`
	// PID is the agent's process id (informational).
	PID int `json:"pid"`
}

// ReadAPIFile reads dir's APIFile. A missing file is reported with an
// error wrapping fs.ErrNotExist: no agent has run its API on dir, or the
// last one stopped cleanly.
func ReadAPIFile(dir string) (APIFileInfo, error) {
	var info APIFileInfo
	path := filepath.Join(dir, APIFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return info, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("%s: %w (delete it; the agent rewrites it at start)", path, err)
	}
	if info.URL == "" || info.PeerID == "" {
		return info, fmt.Errorf("%s: url and peer_id are required (delete it; the agent rewrites it at start)", path)
	}
	return info, nil
}

// writeAPIFile records the API's URL in the data dir (atomically: a
// reader never sees half a file).
func (a *Agent) writeAPIFile() error {
	if a.apiAddr == "" || a.cfg.DataDir == "" {
		return nil
	}
	info := APIFileInfo{URL: "http://" + dialableAddr(a.apiAddr), PeerID: a.ID(), PID: os.Getpid()}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(a.cfg.DataDir, APIFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// removeAPIFile deletes the APIFile if it is still this agent's.
func (a *Agent) removeAPIFile() error {
	if a.apiAddr == "" || a.cfg.DataDir == "" {
		return nil
	}
	info, err := ReadAPIFile(a.cfg.DataDir)
	if err != nil || info.PeerID != a.ID() || info.PID != os.Getpid() {
		return nil
	}
	if err := os.Remove(filepath.Join(a.cfg.DataDir, APIFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", APIFile, err)
	}
	return nil
}

// dialableAddr turns an unspecified listen host (0.0.0.0, ::) into
// loopback so that the address can be dialled.
func dialableAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}
