// Package archive packs a task's output files into one tar archive and
// unpacks archives into a task's work dir.
//
// An archive is a plain (uncompressed) POSIX tar of regular files and
// directories only, in lexical path order, with owner, group and times
// zeroed, so the same files always give the same bytes and so the same
// digest ("sha256:" + 64 lower-case hex digits of the archive bytes).
//
// Invariants: Collect never follows a symlink out of the work dir and
// never writes more than its limit; Unpack never writes outside its
// destination (no absolute paths, no "..", no links, no devices) and
// never more than its limit.
package archive
