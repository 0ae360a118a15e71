#!/usr/bin/env bash
# The wheel, as a user gets it: built from this tree, installed into new virtualenvs
# outside it, used from another directory.
#
#   1. base install (the agent's dependencies only): `import fusebox.agent` works,
#      `import agent` / `import controlplane` do not, a missing extra names itself;
#   2. with [server]: `fusebox validate`, `fusebox serve` on a real redis-server (the
#      Lua scripts are package data), a spec applied, and an agent call through it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
python=${PYTHON:-python3}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "check-wheel: building the wheel" >&2
"$repo/.venv/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$repo" >/dev/null
wheel=$(ls "$work"/dist/fusebox_resilience-*.whl)
if unzip -Z1 "$wheel" | grep -Ev '^(fusebox/|fusebox_resilience-)' ; then
  echo "check-wheel: the wheel installs something besides the fusebox package" >&2
  exit 1
fi

cd "$work"  # nowhere near the source tree from here on

echo "check-wheel: base install (grpcio + protobuf only)" >&2
"$python" -m venv base
base/bin/python -m pip install -q "$wheel"
base/bin/python - <<'EOF'
import importlib, sys
import fusebox.agent
from fusebox.agent import Agent
assert "site-packages" in fusebox.agent.__file__, fusebox.agent.__file__
for top in ("agent", "controlplane"):
    try:
        importlib.import_module(top)
    except ModuleNotFoundError:
        continue
    sys.exit(f"`import {top}` must fail outside the source tree")
try:
    import fusebox.agent.integrations.httpx  # noqa: F401
except ModuleNotFoundError as e:
    assert "pip install 'fusebox-resilience[integrations]'" in str(e), e
else:
    sys.exit("httpx is not installed, yet the integration imported")
with Agent(app_id="checkout") as fb:  # no server, no policies: calls pass through
    assert fb.app("order-processor").call(lambda: "ok") == "ok"
print("check-wheel: base install ok", file=sys.stderr)
EOF
hint=$(base/bin/fusebox validate -f /dev/null 2>&1 || true)
case "$hint" in
  *"pip install 'fusebox-resilience[server]'"*) ;;
  *) echo "check-wheel: fusebox without [server] should name the extra, said: $hint" >&2; exit 1 ;;
esac

echo "check-wheel: install with [server]" >&2
"$python" -m venv server
server/bin/python -m pip install -q "$wheel[server]"
spec="$repo/examples/resiliency.yaml"
server/bin/fusebox validate -f "$spec"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
port=$(free_port)
server/bin/fusebox serve --listen "127.0.0.1:$port" \
  --store "redis://127.0.0.1:$redis_port/0" >"$work/serve.log" 2>&1 &
pids+=($!)

cat >"$work/breaker.yaml" <<'EOF'
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: wheelcheck
spec:
  policies:
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
  targets:
    apps:
      order-processor:
        circuitBreaker: simpleCB
EOF
FUSEBOX_SERVER="127.0.0.1:$port" SPEC="$work/breaker.yaml" server/bin/python - <<'EOF' || { cat "$work/serve.log" >&2; exit 1; }
import os, sys, time
import grpc
from fusebox.v1 import spec_pb2, spec_pb2_grpc
from fusebox.agent import Agent, BreakerOpenError

address = os.environ["FUSEBOX_SERVER"]
deadline = time.monotonic() + 60
with grpc.insecure_channel(address) as channel:
    stub = spec_pb2_grpc.SpecServiceStub(channel)
    while True:
        try:
            stub.ApplySpec(spec_pb2.ApplySpecRequest(yaml=open(os.environ["SPEC"]).read()),
                           timeout=5)
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

def down():
    raise ConnectionError("order-processor is down")

with Agent(app_id="checkout", server=address, cache_path="cache.pb") as fb:
    assert fb.policy_source == "server", fb.policy_source
    orders = fb.app("order-processor", method="orders")
    results = []
    for _ in range(7):
        try:
            orders.call(down)
        except BreakerOpenError:
            results.append("open")
        except ConnectionError:
            results.append("failed")
    assert results == ["failed"] * 5 + ["open"] * 2, results
print("check-wheel: fusebox serve on Redis and an agent call through it ok", file=sys.stderr)
EOF
echo "check-wheel: ok" >&2
