#!/usr/bin/env python3
"""How long other requests wait while `switchyard serve` saves a large execution.

A webhook → a repeater of BUNDLES → MODULES set-variable modules in a chain: MODULES x BUNDLES
output bundles (plus the repeater's and the trigger's), the engine log cap's worst case at
1,000 x 1,000. /health is asked every 20 ms throughout; the save begins when the first part
of the execution's module data is committed (read from the SQLite file, which WAL lets a
reader do while the server writes) and ends when the execution is finished. Prints the
execution's timings, /health's worst and p99 wait during the save and overall, the server's
peak RSS, and the time and size of `GET /api/executions/{id}` (the summary) and of a page.

    cargo build --release
    benches/load/save_stall.py                     # 1,000 x 1,000, SQLite
    MODULES=200 BUNDLES=1000 benches/load/save_stall.py
    SERVE_ARGS="--sqlite-synchronous normal" benches/load/save_stall.py
"""

import http.client
import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("SWITCHYARD_BIN", os.path.join(TARGET, "release", "switchyard"))
MODULES = int(os.environ.get("MODULES", "1000"))
BUNDLES = int(os.environ.get("BUNDLES", "1000"))
TOKEN = "save-stall-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    started = time.monotonic()
    conn.request(method, path, body=body, headers=headers)
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, data, time.monotonic() - started


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else 0.0


def main():
    work = tempfile.mkdtemp(prefix="save-stall-")
    data = os.path.join(work, "data")
    port = free_port()
    args = [BIN, "serve", "--port", str(port), "--data-dir", data, "--hook-rate", "100000000"]
    args += shlex.split(os.environ.get("SERVE_ARGS", ""))
    log = open(os.path.join(work, "serve.log"), "w")
    serve = subprocess.Popen(args, env={**os.environ, "SWITCHYARD_API_TOKEN": TOKEN}, stderr=log)
    try:
        for _ in range(200):
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        flow = [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "large"}},
            {"id": 2, "module": "builtin:BasicRepeater",
             "mapper": {"start": 1, "repeats": "{{1.n}}", "step": 1}},
        ]
        for i in range(3, MODULES + 3):
            flow.append({"id": i, "module": "util:SetVariable2",
                         "mapper": {"name": f"v{i}", "scope": "roundtrip",
                                    "value": "{{2.i}} " + "text " * 30}})
        status, body, _ = request(port, "POST", "/api/scenarios", {"name": "large", "flow": flow})
        assert status == 201, body
        created = json.loads(body)
        request(port, "POST", f"/api/scenarios/{created['id']}/activate")
        hook = created["hooks"][0]["url"]

        probes = []  # (sent, waited)
        peak = [0.0]
        stop = threading.Event()

        def probe():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            while not stop.is_set():
                sent = time.monotonic()
                conn.request("GET", "/health")
                conn.getresponse().read()
                probes.append((sent, time.monotonic() - sent))
                peak[0] = max(peak[0], rss_mb(serve.pid))
                time.sleep(0.02)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        started = time.monotonic()
        status, _, _ = request(port, "POST", hook, {"n": BUNDLES})
        assert status in (200, 202), status
        # The execution's id, and the moment its first part is committed.
        db = sqlite3.connect(f"file:{os.path.join(data, 'switchyard.db')}?mode=ro", uri=True,
                             timeout=30)
        execution = None
        while execution is None:
            row = db.execute("SELECT id FROM executions ORDER BY created_at DESC LIMIT 1").fetchone()
            execution = row and row[0]
            time.sleep(0.01)
        save_began = None
        while True:
            status = db.execute("SELECT status FROM executions WHERE id = ?", (execution,)).fetchone()[0]
            if save_began is None and db.execute(
                    "SELECT 1 FROM execution_modules WHERE execution_id = ? AND module_id = 1",
                    (execution,)).fetchone():
                save_began = time.monotonic()
            if status in ("success", "error", "incomplete"):
                break
            time.sleep(0.02)
        saved = time.monotonic()
        stop.set()
        prober.join()
        save_began = save_began or saved
        during = [w for s, w in probes if s + w >= save_began - 0.05 and s <= saved]
        _, summary, summary_s = request(port, "GET", f"/api/executions/{execution}")
        modules = json.loads(summary)["modules"]
        _, page, page_s = request(
            port, "GET", f"/api/executions/{execution}?module={MODULES + 2}&offset=900&limit=100")
        stored = sum(m["stored"] for m in modules)
        print(f"modules={MODULES} bundles={BUNDLES} stored={stored} status={status} "
              f"SERVE_ARGS={os.environ.get('SERVE_ARGS', '')!r}")
        print(f"  run+save {saved - started:.2f} s, save {saved - save_began:.2f} s; "
              f"/health during the save: {len(during)} probes, worst {max(during, default=0)*1000:.0f} ms, "
              f"p99 {percentile(during, 0.99)*1000:.0f} ms; overall worst "
              f"{max((w for _, w in probes), default=0)*1000:.0f} ms over {len(probes)} probes")
        print(f"  peak RSS {peak[0]:.0f} MB; GET summary {len(summary)} bytes in "
              f"{summary_s*1000:.0f} ms; a page of 100 {len(page)} bytes in {page_s*1000:.0f} ms; "
              f"database {os.path.getsize(os.path.join(data, 'switchyard.db'))/1e6:.0f} MB")
    finally:
        serve.terminate()
        serve.wait()
        log.close()
        if os.environ.get("KEEP") is None:
            subprocess.run(["rm", "-rf", work])
        else:
            print(f"  kept {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
