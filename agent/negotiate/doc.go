// Package negotiate is the wire of /pcm/negotiate/1.0.0, the stream on
// which a broker and a provider agree on one attempt of a task
// (agent/PROTOCOL.md): the messages in their order (CFP, then bid or
// decline, award or release, confirm, committed or aborted), the signed
// Envelope that carries each, and framed reads that end at a deadline.
//
// Invariants:
//   - every message is an Envelope whose payload its signer signed under
//     the domain "negotiate/<kind>/v1": Open refuses a wrong kind, a
//     signer other than the one expected and a bad signature with
//     ErrBadMessage before it decodes anything;
//   - a frame is at most MaxFrame bytes, read or written;
//   - ReadEnvBy returns by its deadline on every transport, also those
//     that ignore stream deadlines (it closes the stream then).
package negotiate
