// Package testnet runs many real pcm agents in one process for tests and
// benchmarks: each agent has its own data dir, identity and libp2p host on
// loopback with free ports. The scripts beside it (up.sh, down.sh, ...)
// run agents as separate processes.
//
//	m := testnet.Start(t, testnet.Options{N: 5, Topology: testnet.Chain})
//	m.WaitFor(5*time.Second, "all adverts", func() bool { ... })
//	m.Stop(2)
//
// Every wait polls a condition with a deadline; nothing sleeps blindly.
package testnet
