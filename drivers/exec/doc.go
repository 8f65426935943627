// Package exec runs a driver plugin: an external program, in any
// language, that speaks the JSON-lines protocol of PROTOCOL.md on its
// stdin and stdout. It is how a back end (ModelArts, OpenStack, another
// scheduler) is added without recompiling pcm.
//
// The Go side keeps the invariants every driver keeps, whatever the
// plugin does: it validates specs (drivers.ValidateSpec with the kinds the
// plugin fingerprints and the options it lists in the handshake) and
// accounts capacity (drivers.Capacity over the plugin's total) before
// asking the plugin to start anything; it polls the status of non-final
// tasks, so capacity is released and events are emitted even if nobody
// waits. The plugin owns task state in the state dir it gets in the
// handshake, and reports it back through "recover".
//
// The plugin is started on first use. If it exits, calls in flight fail
// with ErrPluginExited (with its exit status and the tail of its stderr),
// and the next call starts it again (with a new handshake).
package exec
