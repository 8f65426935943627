// Package local is pcm's embedded driver: each task is a child process of
// the agent, in its own process group and its own work dir under the
// driver's state dir.
//
// Layout of the state dir:
//
//	tasks/<id>/task.json   the task record (spec, status, pid, pid start time),
//	                       replaced atomically (write temp file, rename)
//	tasks/<id>/output.log  stdout and stderr of the task, appended
//	tasks/<id>/exitcode    the command's exit code, written by the wrapper
//	tasks/<id>/work/       the task's working dir and $HOME
//
// Every task runs under a tiny /bin/sh wrapper,
//
//	sh -c 'ulimit ...; trap : TERM INT; f=$1; shift; "$@"; c=$?; echo $c >"$f.tmp" && mv "$f.tmp" "$f"; exit $c'
//
// so its exit code survives the agent: after a restart, Recover reattaches
// to a process that is still running (same pid and same start time in
// /proc/<pid>/stat, so a reused pid is never mistaken for the task), polls
// it until it ends and reads the exit code from the file. A task whose
// process vanished without writing the file ended abnormally (killed as a
// whole group, or the machine rebooted) and is reported failed.
//
// Invariants: a task is recorded on disk before its process starts; the
// capacity ledger holds exactly the non-final tasks; a task's done channel
// is closed once, after its final record is written and its capacity
// released; one goroutine (the reaper) owns waiting for processes,
// timeouts and the SIGTERM→SIGKILL escalation.
package local
