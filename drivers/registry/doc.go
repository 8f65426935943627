// Package registry builds a driver from its kind and its config section,
// so the agent's config file can list drivers without the agent knowing
// each driver's Config type:
//
//	drivers:
//	  - kind: local
//	    config: {capacity: {cpus: 4, memory_mb: 8192}, grace: 30s}
//	  - kind: exec
//	    config: {command: [python3, /opt/pcm/modelarts.py]}
//
// Configs are decoded strictly: an unknown key is an error naming it.
// Durations are Go duration strings ("30s"). A driver whose config names
// no state_dir gets stateDir.
package registry
