package agent

import (
	"fmt"
	"time"
)

// ResultsConfig bounds the results archives this agent makes and keeps.
type ResultsConfig struct {
	// MaxBytes is the most archive bytes the agent keeps (its own tasks'
	// outputs, copies it brokers or fetched); the least recently used go
	// first (default 10 GiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// Retention is how long an archive is kept after its last use
	// (default 7 days).
	Retention time.Duration `yaml:"retention"`
	// MaxOutputBytes caps one task's outputs on this provider, whatever
	// the task and framework allow (default 4 GiB).
	MaxOutputBytes int64 `yaml:"max_output_bytes"`
	// FetchTimeout bounds one fetch across all holders (default 30m).
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
}

// orDefaults fills unset fields.
func (c ResultsConfig) orDefaults() ResultsConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 30
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.MaxOutputBytes == 0 {
		c.MaxOutputBytes = 4 << 30
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = 30 * time.Minute
	}
	return c
}

// validate names a bad field and the fix.
func (c ResultsConfig) validate() error {
	switch {
	case c.MaxBytes < 0:
		return fmt.Errorf("results.max_bytes %d is negative; use a size in bytes (0: default 10 GiB)", c.MaxBytes)
	case c.MaxOutputBytes < 0:
		return fmt.Errorf("results.max_output_bytes %d is negative; use a size in bytes (0: default 4 GiB)", c.MaxOutputBytes)
	case c.Retention < 0:
		return fmt.Errorf("results.retention %s is negative; use a duration such as 72h (0: default 7 days)", c.Retention)
	case c.FetchTimeout < 0:
		return fmt.Errorf("results.fetch_timeout %s is negative; use a duration such as 10m (0: default 30m)", c.FetchTimeout)
	}
	return nil
}
