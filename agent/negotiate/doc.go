// Package negotiate is the wire of /pcm/negotiate/1.1.0 (and of 1.0.0,
// served for earlier agents), the stream on which a broker and a provider
// agree on one attempt of a task (agent/PROTOCOL.md): the messages in
// their order (CFP, then bid or decline, award or release, confirm,
// committed or aborted), the Envelope that carries each, and framed reads
// that end at a deadline. A Wire seals and opens one stream's messages;
// an Exchange carries one negotiation's: on 1.1.0 one of the many a
// Session multiplexes over one stream per broker and provider (a broker's
// Pool keeps one per provider), on 1.0.0 a stream of its own.
//
// Invariants:
//   - on 1.1.0 a message's sender is the stream's authenticated remote
//     peer (Noise/TLS); what must be non-repudiable, the agreement, carries
//     its parties' ledger signatures inside the award and confirm;
//   - a Session hands each message only to its negotiation; one that names
//     none, or floods one, resets the session and ends every negotiation
//     on it, on both sides; a broker's negotiation closed unfinished is
//     released, so the provider drops its hold;
//   - on 1.0.0 every message is an Envelope whose payload its signer
//     signed under the domain "negotiate/<kind>/v1";
//   - Wire.Open refuses a wrong kind and a sender other than the one
//     expected (and, signed, a bad signature) with ErrBadMessage before it
//     decodes anything;
//   - a frame is at most MaxFrame bytes, read or written;
//   - Exchange.Recv returns when its context ends on every transport, also
//     those that ignore stream deadlines (a stream of its own is closed
//     then).
package negotiate
