#!/usr/bin/env bash
# The HTTP API against clients nobody here wrote: the official `openai` npm package, `curl -N`
# reading a stream, and `promtool check metrics` on /metrics.
# Usage: tests/http/run_http_clients.sh PATH/TO/hybridserve
# Needs node (>= 20) with npm, curl and promtool (tools/setup.sh installs them); the npm package
# is installed into tests/http/node_modules (git-ignored) on first use.
set -euo pipefail

bin=$(realpath "${1:?usage: run_http_clients.sh PATH/TO/hybridserve}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
fail() { echo "http_clients: FAIL: $*" >&2; exit 1; }

for tool in node npm curl promtool; do
  command -v "$tool" >/dev/null || fail "'$tool' is missing (run tools/setup.sh)"
done

want=$(node -p "require('$here/package.json').dependencies.openai")
have=$(node -p "try { require('$here/node_modules/openai/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
  echo "http_clients: npm install openai@$want"
  (cd "$here" && npm install --no-audit --no-fund --no-package-lock --loglevel=error) ||
    fail "npm install failed"
fi

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
port=$(free_port)
key="test-key-$$"
base="http://127.0.0.1:$port"
work=$(mktemp -d)
log="$work/serve.log"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --set server.port=0 --set http.port="$port" \
  --set model.path="\"$root/tests/fixtures/opt-tiny\"" \
  --set http.api_key="\"$key\"" --set http.chat_template=chatml >"$log" 2>&1 &
pid=$!

ready=""
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited early"; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base/health" || true)
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || { cat "$log" >&2; fail "/health never answered 200"; }
grep -q "http listening on" "$log" || fail "no 'http listening on' in the log"
echo "http_clients: server ready on $base"

# 1. the official openai package
node "$here/openai_client.mjs" "$base/v1" "$key" || { cat "$log" >&2; fail "openai client"; }

# 2. curl -N reads a stream to its end
sse="$work/stream.txt"
curl -sN --max-time 60 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"prompt":"Once upon a time","max_tokens":16,"stream":true}' \
  "$base/v1/completions" >"$sse" || fail "curl stream"
grep -q '^data: {' "$sse" || { cat "$sse" >&2; fail "the stream has no data events"; }
[ "$(grep '^data: ' "$sse" | tail -n 1)" = "data: [DONE]" ] ||
  { cat "$sse" >&2; fail "the stream does not end with data: [DONE]"; }
echo "ok: curl -N read $(grep -c '^data: {' "$sse") events and data: [DONE]"
curl -sN --max-time 60 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true}' \
  "$base/v1/chat/completions" >"$sse" || fail "curl chat stream"
[ "$(grep '^data: ' "$sse" | tail -n 1)" = "data: [DONE]" ] ||
  { cat "$sse" >&2; fail "the chat stream does not end with data: [DONE]"; }
echo "ok: curl -N read a chat stream to data: [DONE]"
code=$(curl -s -o "$work/err.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"prompt":"x"}' "$base/v1/completions")
[ "$code" = 401 ] && grep -q '"invalid_api_key"' "$work/err.json" ||
  fail "a request without the key should be 401 invalid_api_key (got $code)"
echo "ok: no key -> 401"

# 3. promtool accepts /metrics
curl -sf "$base/metrics" >"$work/metrics.txt" || fail "GET /metrics"
if ! promtool check metrics <"$work/metrics.txt" >"$work/promtool.txt" 2>&1 ||
   [ -s "$work/promtool.txt" ]; then
  cat "$work/promtool.txt" >&2
  fail "promtool check metrics"
fi
grep -q '^hybridserve_time_to_first_token_seconds_count [1-9]' "$work/metrics.txt" ||
  fail "/metrics has no time-to-first-token observations"
echo "ok: promtool check metrics accepts /metrics ($(grep -vc '^#' "$work/metrics.txt") samples)"

# 4. SIGTERM: a clean exit 0
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || { cat "$log" >&2; fail "serve exited with $rc after SIGTERM"; }
grep -q "stopped" "$log" || fail "no 'stopped' in the log"
echo "http_clients: all passed"
