#!/usr/bin/env bash
# Start the local stack on 127.0.0.1: a Ray head (with the job API), an S3 endpoint (moto's server)
# and an MLflow tracking server (sqlite backend, artifacts proxied to s3://$STARK_S3_BUCKET/mlflow).
#
#   infra/local/start.sh                          # then: eval "$(cat "$STARK_LOCAL_DIR/env")" or copy the exports
#   STARK_MLFLOW_PORT=5001 infra/local/start.sh   # any port below can be moved
#   infra/local/stop.sh                           # stops exactly what this started
#
# Settings (environment):
#   STARK_LOCAL_DIR           state folder: pids, logs, sqlite, Ray's temp dir (default ${TMPDIR:-/tmp}/stark-local;
#                             keep it short, Ray's socket paths live under it)
#   STARK_RAY_PORT            Ray head (GCS) port, default 6379
#   STARK_RAY_DASHBOARD_PORT  Ray dashboard / job submission API, default 8265
#   STARK_RAY_NUM_CPUS        CPUs the head offers (default: all)
#   STARK_S3_PORT             S3 endpoint, default 9000
#   STARK_S3_BUCKET           bucket created at start, default stark
#   STARK_MLFLOW_PORT         MLflow server, default 5000
#   STARK_LOCAL_TIMEOUT       seconds to wait for each service, default 180
# Ray's other ports (client server, agents, metrics, node/object manager) are picked free at start,
# so this head never collides with another Ray on the same machine.
set -euo pipefail

STATE="${STARK_LOCAL_DIR:-${TMPDIR:-/tmp}/stark-local}"
RAY_PORT="${STARK_RAY_PORT:-6379}"
DASHBOARD_PORT="${STARK_RAY_DASHBOARD_PORT:-8265}"
S3_PORT="${STARK_S3_PORT:-9000}"
BUCKET="${STARK_S3_BUCKET:-stark}"
MLFLOW_PORT="${STARK_MLFLOW_PORT:-5000}"
TIMEOUT="${STARK_LOCAL_TIMEOUT:-180}"
PYTHON="${PYTHON:-python3}"
HOST=127.0.0.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
for name in ray s3 mlflow; do
  if [[ -f "$STATE/$name.pid" ]] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
    echo "the local stack in $STATE is already running ($name pid $(cat "$STATE/$name.pid")); run infra/local/stop.sh first" >&2
    exit 1
  fi
done
if (( ${#STATE} > 60 )); then
  echo "STARK_LOCAL_DIR=$STATE is too long: Ray's unix socket paths under it must stay below 108 characters" >&2
  exit 1
fi

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# launch NAME CMD...: the service runs in its own session (so stop.sh can end its whole process group),
# its output goes to $STATE/NAME.log and its pid (= its process group id) to $STATE/NAME.pid.
launch() {
  local name="$1"; shift
  setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

# wait_http NAME URL [TOKEN]: until URL answers 200 (sent the bearer TOKEN, if any), the service dies,
# or the timeout passes.
wait_http() {
  local name="$1" url="$2" token="${3:-}" deadline=$((SECONDS + TIMEOUT))
  until "$PYTHON" -c '
import sys, urllib.request
headers = {"Authorization": "Bearer " + sys.argv[2]} if sys.argv[2] else {}
sys.exit(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=headers), timeout=5).status != 200)
' "$url" "$token" 2>/dev/null; do
    if ! kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
      echo "$name exited during start; the end of $STATE/$name.log:" >&2; tail -n 30 "$STATE/$name.log" >&2; return 1
    fi
    if (( SECONDS > deadline )); then
      echo "$name did not answer $url within ${TIMEOUT}s; the end of $STATE/$name.log:" >&2; tail -n 30 "$STATE/$name.log" >&2; return 1
    fi
    sleep 1
  done
}

fail() { "$HERE/stop.sh" >/dev/null 2>&1 || true; exit 1; }

export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
S3_URL="http://$HOST:$S3_PORT"
MLFLOW_URL="http://$HOST:$MLFLOW_PORT"
RAY_URL="http://$HOST:$DASHBOARD_PORT"

# 1. S3 endpoint (moto's standalone server: objects live in memory until stop.sh, while MLflow's sqlite
#    file stays in the state folder; remove the folder for a clean start)
launch s3 "$PYTHON" -m moto.server -H "$HOST" -p "$S3_PORT"

# 2. MLflow: runs and registry in sqlite, artifacts proxied by the server to S3
MLFLOW_S3_ENDPOINT_URL="$S3_URL" AWS_ENDPOINT_URL="$S3_URL" \
  launch mlflow "$PYTHON" -m mlflow server --host "$HOST" --port "$MLFLOW_PORT" --workers 1 \
    --backend-store-uri "sqlite:///$STATE/mlflow.db" \
    --artifacts-destination "s3://$BUCKET/mlflow" --serve-artifacts

# 3. Ray head. --block keeps `ray start` in the foreground as the owner of every Ray process it
# starts: SIGTERM to it (stop.sh) stops this head only, never another Ray on the machine (`ray stop` would).
# Ray (the node's processes) binds the machine's address, the dashboard and job API 127.0.0.1 only.
ray_args=(--head --block --disable-usage-stats --node-ip-address="$HOST" --port="$RAY_PORT"
  --include-dashboard=true --dashboard-host="$HOST" --dashboard-port="$DASHBOARD_PORT"
  --temp-dir="$STATE/ray"
  --dashboard-agent-listen-port="$(free_port)" --dashboard-agent-grpc-port="$(free_port)"
  --metrics-export-port="$(free_port)" --runtime-env-agent-port="$(free_port)"
  --node-manager-port="$(free_port)" --object-manager-port="$(free_port)")
[[ -n "${STARK_RAY_NUM_CPUS:-}" ]] && ray_args+=(--num-cpus="$STARK_RAY_NUM_CPUS")
# Ray's client server (default port 10001) runs only where ray[client] is installed: move it to a free port.
if "$PYTHON" -c 'import sys; from ray._private.utils import get_ray_client_dependency_error as e; sys.exit(e() is not None)' 2>/dev/null; then
  ray_args+=(--ray-client-server-port="$(free_port)")
fi
# The head's processes and every worker inherit this environment:
# - token authentication with a token of its own (left to itself, Ray would use ~/.ray/auth_token if
#   some other local cluster made one, and no authentication otherwise); clients need RAY_AUTH_MODE
#   and RAY_AUTH_TOKEN_PATH from the env file;
# - RAY_ADDRESS naming this head, as KubeRay sets it in its pods: Ray's own helpers that look the
#   cluster up (Ray Train's placement group cleaner, the state API) would otherwise find every Ray on
#   the machine and give up;
# - no 30 s drain on SIGTERM (it exists for Ray Serve), so stop.sh stops the head at once;
# - the S3 and MLflow settings, so plain `ray job submit` reaches this S3 and MLflow too.
TOKEN_FILE="$STATE/ray_auth_token"
[[ -s "$TOKEN_FILE" ]] || (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32), end="")' >"$TOKEN_FILE")
RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN_FILE" RAY_ADDRESS="$HOST:$RAY_PORT" \
RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 AWS_ENDPOINT_URL="$S3_URL" MLFLOW_TRACKING_URI="$MLFLOW_URL" \
  launch ray "$PYTHON" -m ray.scripts.scripts start "${ray_args[@]}"

wait_http s3 "$S3_URL/moto-api/" || fail
"$PYTHON" - "$S3_URL" "$BUCKET" <<'EOF' || fail
import sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
s3.create_bucket(Bucket=sys.argv[2])
EOF
wait_http mlflow "$MLFLOW_URL/health" || fail
wait_http ray "$RAY_URL/api/jobs/" "$(cat "$TOKEN_FILE")" || fail

cat >"$STATE/env" <<EOF
export RAY_ADDRESS=$RAY_URL
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$TOKEN_FILE
export AWS_ENDPOINT_URL=$S3_URL
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION
export MLFLOW_TRACKING_URI=$MLFLOW_URL
EOF
echo "local stack up (state, pids and logs in $STATE):"
echo "  Ray head      GCS port $RAY_PORT; dashboard and job API $RAY_URL"
echo "  S3 endpoint   $S3_URL, bucket s3://$BUCKET"
echo "  MLflow        $MLFLOW_URL (artifacts in s3://$BUCKET/mlflow)"
echo "export these (or: source $STATE/env):"
sed 's/^/  /' "$STATE/env"
echo "stop with: STARK_LOCAL_DIR=$STATE $HERE/stop.sh"
