// Package mesh is pcm's libp2p layer: the host (TCP and QUIC, Noise and
// TLS, yamux, resource and connection managers, optional private network),
// the agent's Ed25519 identity, discovery (bootstrap peers, a private
// kad-dht under the /pcm protocol prefix, and the authors of adverts,
// dialled until a node has Config.DiscoverPeers connections), gossipsub
// adverts and the
// resource table built from them, stream helpers and a raft stream layer,
// and NAT traversal (nat.go): AutoNAT v2 reachability, circuit relay v2
// service and reservations, DCUtR hole punching.
//
// Invariants:
//   - every advert in the Table passed the Validator: it is well formed,
//     at most MaxAdvertSize bytes, signed by the provider it describes
//     (gossipsub StrictSign), fresh, and newer than the last one seen from
//     that provider;
//   - adverts leave the Table once their TTL has passed;
//   - the identity key on disk is never replaced: a wrong mode or a corrupt
//     file is an error naming the file;
//   - an agent serves as relay only while AutoNAT (or its configuration)
//     says it is public, and holds relay reservations only while it is
//     not; every stream opened through Node may use a relayed connection.
//
// Wire formats are documented in PROTOCOL.md.
package mesh
