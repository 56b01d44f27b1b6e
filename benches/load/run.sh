#!/usr/bin/env bash
# Load test of `switchyard serve` with wrk on loopback — the peer benchmark's scenario
# (docs/performance.md): webhook → set `greeting` → HTTP POST to a mock API (mock-api.js beside
# this script) → answer the caller (`sync`), or acknowledge once durably queued (`ingest`).
#
#   benches/load/run.sh                       # SQLite, modes sync+ingest, c = 1 16 64, 10 s each
#   DATABASE_URL_PG=postgres://… benches/load/run.sh   # also PostgreSQL
#   MODES=sync CONCURRENCY=16 DURATION=20 benches/load/run.sh
#   SERVE_ARGS="--concurrency 8" benches/load/run.sh   # other than the defaults (measured first)
#
# Prints one line per window: backend, mode, concurrency, req/s, p50/p99 ms, non-2xx, and for
# ingest how many executions the mock saw in the window. Needs wrk (apt-get install wrk) and
# node (for mock-api.js).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/switchyard"
MODES="${MODES:-sync ingest}"
CONCURRENCY="${CONCURRENCY:-1 16 64}"
DURATION="${DURATION:-10}"
PORT="${PORT:-18900}"
MOCK_PORT="${MOCK_PORT:-18080}"
MOCK="${MOCK:-$ROOT/benches/load/mock-api.js}"
TOKEN="load-test-token-0123456789"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

node "$MOCK" "$MOCK_PORT" >/dev/null 2>&1 & PIDS+=($!)
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"user":{"id":123,"name":"Ann"},"text":"hello"}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %d %d\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
LUA

backends="sqlite"
[ -n "${DATABASE_URL_PG:-}" ] && backends="sqlite postgres"
for backend in $backends; do
  for mode in $MODES; do
    # The defaults a user gets, but for the per-hook rate limit, which a load test would hit.
    # shellcheck disable=SC2206
    args=(serve --port "$PORT" --hook-rate 100000000 --respond-timeout-seconds 10 ${SERVE_ARGS:-})
    if [ "$backend" = postgres ]; then
      psql "$DATABASE_URL_PG" -qc 'DROP SCHEMA IF EXISTS apalis CASCADE; DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null
      args+=(--database-url "$DATABASE_URL_PG")
    else
      args+=(--data-dir "$WORK/data-$mode")
    fi
    # The scenarios call the mock API on loopback, which the egress guard refuses unless allowed.
    SWITCHYARD_API_TOKEN=$TOKEN SWITCHYARD_ALLOW_EGRESS=127.0.0.1 "$BIN" "${args[@]}" 2>"$WORK/serve.log" & SERVE=$!; PIDS+=($SERVE)
    for _ in $(seq 100); do curl -sf "localhost:$PORT/health" >/dev/null && break; sleep 0.1; done
    idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVE/status)
    scenario=$(sed "s|\$MOCK_URL|http://127.0.0.1:$MOCK_PORT/api|" "benches/load/$mode.json")
    created=$(curl -sf -H "Authorization: Bearer $TOKEN" "localhost:$PORT/api/scenarios" --data-binary "$scenario")
    id=$(echo "$created" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
    hook=$(echo "$created" | python3 -c 'import sys,json;print(json.load(sys.stdin)["hooks"][0]["url"])')
    curl -sf -XPOST -H "Authorization: Bearer $TOKEN" "localhost:$PORT/api/scenarios/$id/activate" >/dev/null
    wrk -t2 -c16 -d3s -s "$WORK/post.lua" "http://127.0.0.1:$PORT$hook" >/dev/null  # warm-up
    for c in $CONCURRENCY; do
      curl -sf -XPOST "localhost:$MOCK_PORT/reset" >/dev/null
      threads=$(( c < 2 ? 1 : 2 ))
      cpu_before=$(awk '{print $14 + $15}' /proc/$SERVE/stat)
      line=$(wrk -t$threads -c"$c" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT$hook" | grep '^WRK')
      read -r _ requests dur_us errors p50 p99 max <<<"$line"
      seen=$(curl -sf "localhost:$MOCK_PORT/stats" | python3 -c 'import sys,json;print(json.load(sys.stdin)["ok"])')
      cpu_after=$(awk '{print $14 + $15}' /proc/$SERVE/stat)
      rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVE/status)
      python3 - "$backend" "$mode" "$c" "$requests" "$dur_us" "$errors" "$p50" "$p99" "$seen" "$idle_rss" "$rss" \
        "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" <<'PY'
import sys
b, m, c, req, dur, err, p50, p99, seen, idle, rss, ticks, hz = sys.argv[1:]
secs = int(dur) / 1e6
cpu_s = int(ticks) / int(hz)
# Requests per CPU-second of the server: what does not depend on how busy the machine is.
per_cpu_s = int(req) / cpu_s if cpu_s else 0
print(f"backend={b} mode={m} conc={c} rps={int(req)/secs:.0f} p50_ms={int(p50)/1000:.2f} p99_ms={int(p99)/1000:.2f} "
      f"non2xx_or_err={err} downstream_in_window={seen} idle_rss_mb={int(idle)/1024:.1f} rss_mb={int(rss)/1024:.1f} "
      f"server_cpu_pct={100 * cpu_s / secs:.0f} req_per_cpu_s={per_cpu_s:.0f}")
PY
    done
    kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
  done
done
