#!/usr/bin/env python3
"""shell-driver: an example pcm exec-driver plugin (Python 3, stdlib only).

It runs each task as a local shell process, like pcm's built-in `local`
driver, and speaks protocol version 1 of drivers/exec/PROTOCOL.md: one JSON
request per line on stdin, one JSON response per line on stdout, requests
handled concurrently (one thread each) and answered by id.

State lives under the state_dir sent in the handshake:

    tasks/<id>/spec.json    the task spec
    tasks/<id>/pid          "<pid> <start time from /proc/<pid>/stat>"
    tasks/<id>/output.log   stdout + stderr
    tasks/<id>/exitcode     written by the wrapper shell when the task ends
    tasks/<id>/cancelled    present once stop was asked
    tasks/<id>/work/        working dir

so a restarted plugin (or a restarted agent) finds every task again.

Handshake config (all optional): {"cpus": 2, "memory_mb": 2048}.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time

PROTOCOL = 1
NAME = "shell"
WRAPPER = ('trap : TERM INT; f=$1; shift; "$@"; c=$?; '
           'echo $c >"$f.tmp" && mv "$f.tmp" "$f"; exit $c')


class PluginError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Driver:
    def __init__(self):
        self.state_dir = None
        self.capacity = {"cpus": float(os.cpu_count() or 1), "memory_mb": 1024}
        self.children = {}  # id -> Popen, for tasks this process started
        self.lock = threading.Lock()

    # --- helpers -----------------------------------------------------------

    def task_dir(self, tid):
        if not tid or "/" in tid or tid in (".", ".."):
            raise PluginError("invalid_spec", "task id %r is not a file name" % tid)
        return os.path.join(self.state_dir, "tasks", tid)

    def existing_dir(self, tid):
        d = self.task_dir(tid)
        if not os.path.exists(os.path.join(d, "spec.json")):
            raise PluginError("not_found", "task %r is unknown to this plugin" % tid)
        return d

    @staticmethod
    def read(path, default=None):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return default

    @staticmethod
    def proc_start(pid):
        """(state letter, start time) of pid from /proc, or None."""
        try:
            with open("/proc/%d/stat" % pid) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            return rest[0], rest[19]
        except (OSError, IndexError):
            return None

    def alive(self, tid, d):
        child = self.children.get(tid)
        if child is not None:
            return child.poll() is None
        pid_line = self.read(os.path.join(d, "pid"))
        if not pid_line:
            return False
        pid, start = pid_line.split()
        st = self.proc_start(int(pid))
        return st is not None and st[1] == start and st[0] not in "ZX"

    def pgid(self, d):
        return int(self.read(os.path.join(d, "pid")).split()[0])

    @staticmethod
    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)

    def status_of(self, tid, d):
        st = {"id": tid, "native_id": "", "exit_code": 0, "usage": {"cpu_seconds": 0, "wall_seconds": 0}}
        pid_line = self.read(os.path.join(d, "pid"))
        if pid_line:
            st["native_id"] = pid_line.split()[0]
            started = os.stat(os.path.join(d, "pid")).st_mtime
            st["started_at"] = self.iso(started)
        cancelled = os.path.exists(os.path.join(d, "cancelled"))
        code_path = os.path.join(d, "exitcode")
        if self.alive(tid, d):
            st["state"] = "running"
            return st
        code = self.read(code_path)
        if code is not None:
            st["exit_code"] = int(code.strip())
            finished = os.stat(code_path).st_mtime
        else:
            st["exit_code"] = -1
            st["message"] = "process ended without writing an exit code"
            finished = time.time()
        st["finished_at"] = self.iso(finished)
        if pid_line:
            st["usage"]["wall_seconds"] = max(0.0, finished - started)
        if cancelled:
            st["state"], st["message"] = "cancelled", "stopped"
        elif st["exit_code"] == 0:
            st["state"] = "succeeded"
        else:
            st["state"] = "failed"
            st.setdefault("message", "exit code %d" % st["exit_code"])
        return st

    # --- methods -----------------------------------------------------------

    def handshake(self, p):
        if p.get("protocol") != PROTOCOL:
            raise PluginError("protocol", "this plugin speaks protocol %d, not %r" % (PROTOCOL, p.get("protocol")))
        self.state_dir = p["state_dir"]
        os.makedirs(os.path.join(self.state_dir, "tasks"), exist_ok=True)
        cfg = p.get("config") or {}
        for k in ("cpus", "memory_mb"):
            if k in cfg:
                self.capacity[k] = cfg[k]
        return {"protocol": PROTOCOL, "name": NAME, "options": [], "files": True}

    def fingerprint(self, p):
        total = {"cpus": self.capacity["cpus"], "memory_mb": self.capacity["memory_mb"]}
        return {"total": total, "attributes": {"plugin": NAME}, "kinds": ["command", "script"]}

    def start(self, p):
        spec = p["spec"]
        tid = spec["id"]
        d = self.task_dir(tid)
        argv = spec.get("command") or []
        if spec.get("script"):
            argv = ["/bin/sh", os.path.join(d, "script")]
        if not argv:
            raise PluginError("invalid_spec", "task %r: set command or script" % tid)
        try:
            os.makedirs(os.path.join(d, "work"))
        except FileExistsError:
            raise PluginError("exists", "task %r already exists; use a new id" % tid)
        if spec.get("script"):
            with open(argv[1], "w") as f:
                f.write(spec["script"])
        work = p.get("work_dir") or os.path.join(d, "work")  # files: pcm's work dir
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": work, "PCM_TASK_ID": tid}
        env.update(spec.get("env") or {})
        with open(os.path.join(d, "spec.json"), "w") as f:
            json.dump(spec, f)
        with open(os.path.join(d, "output.log"), "ab") as log:
            child = subprocess.Popen(
                ["/bin/sh", "-c", WRAPPER, "pcm-task", os.path.join(d, "exitcode")] + argv,
                cwd=work, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        start = self.proc_start(child.pid)
        tmp = os.path.join(d, "pid.tmp")
        with open(tmp, "w") as f:
            f.write("%d %s" % (child.pid, start[1] if start else "0"))
        os.rename(tmp, os.path.join(d, "pid"))
        with self.lock:
            self.children[tid] = child
        return self.status_of(tid, d)

    def status(self, p):
        return self.status_of(p["id"], self.existing_dir(p["id"]))

    def logs(self, p):
        tid = p["id"]
        d = self.existing_dir(tid)
        final = not self.alive(tid, d)  # decide before reading: no output is lost
        with open(os.path.join(d, "output.log"), "rb") as f:
            f.seek(p.get("offset", 0))
            data = f.read(p.get("limit") or 65536)
            more = f.read(1) != b""
        return {"data": base64.b64encode(data).decode(), "eof": final and not more}

    def stop(self, p):
        tid = p["id"]
        d = self.existing_dir(tid)
        if not self.alive(tid, d):
            return {}
        open(os.path.join(d, "cancelled"), "w").close()
        pgid = self.pgid(d)
        self.kill(pgid, signal.SIGTERM)
        deadline = time.time() + p.get("grace_ms", 10000) / 1000.0
        while self.alive(tid, d) and time.time() < deadline:
            time.sleep(0.02)
        self.kill(pgid, signal.SIGKILL)
        while self.alive(tid, d):
            time.sleep(0.01)
        return {}

    @staticmethod
    def kill(pgid, sig):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    def recover(self, p):
        out = []
        root = os.path.join(self.state_dir, "tasks")
        for tid in sorted(os.listdir(root)):
            d = os.path.join(root, tid)
            spec = self.read(os.path.join(d, "spec.json"))
            if spec is None:
                continue
            out.append({"status": self.status_of(tid, d), "resources": json.loads(spec).get("resources", {})})
        return out


def main():
    drv = Driver()
    out_lock = threading.Lock()

    def reply(msg):
        line = json.dumps(msg, separators=(",", ":")) + "\n"
        with out_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def handle(req):
        rid = req.get("id")
        method = req.get("method", "")
        try:
            fn = getattr(drv, method, None) if not method.startswith("_") else None
            if method not in ("handshake", "fingerprint", "start", "status", "logs", "stop", "recover"):
                raise PluginError("unknown_method", "method %r is not part of protocol %d" % (method, PROTOCOL))
            if method != "handshake" and drv.state_dir is None:
                raise PluginError("protocol", "handshake first")
            reply({"id": rid, "result": fn(req.get("params") or {})})
        except PluginError as e:
            reply({"id": rid, "error": {"code": e.code, "message": str(e)}})
        except Exception as e:  # a bug here must not kill the other requests
            reply({"id": rid, "error": {"code": "internal", "message": "%s: %s" % (type(e).__name__, e)}})

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            print("shell-driver: malformed request line: %s" % e, file=sys.stderr, flush=True)
            continue
        if req.get("method") == "shutdown":
            reply({"id": req.get("id"), "result": {}})
            return
        if req.get("method") == "handshake":
            handle(req)  # in order: nothing else may run before it
        else:
            threading.Thread(target=handle, args=(req,), daemon=True).start()


if __name__ == "__main__":
    main()
