package exec

import "errors"

var (
	// ErrPluginExited: the plugin process ended (crashed, or closed
	// stdout). Calls in flight fail with it; the next call restarts the
	// plugin.
	ErrPluginExited = errors.New("driver plugin exited")
	// ErrPlugin: the plugin answered with an error outside the drivers
	// sentinels, or a malformed result.
	ErrPlugin = errors.New("driver plugin error")
	// ErrProtocol: the plugin speaks another protocol version.
	ErrProtocol = errors.New("driver plugin protocol mismatch")
)
