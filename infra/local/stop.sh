#!/usr/bin/env bash
# Stop what infra/local/start.sh started (same STARK_LOCAL_DIR): exactly the processes whose pids it
# wrote, each with its own process group. Never touches another Ray, S3 or MLflow on the machine.
#
#   infra/local/stop.sh
#   STARK_LOCAL_DIR=/tmp/my-stack infra/local/stop.sh
set -uo pipefail

STATE="${STARK_LOCAL_DIR:-${TMPDIR:-/tmp}/stark-local}"
GRACE="${STARK_LOCAL_GRACE:-30}"

alive() { kill -0 "$1" 2>/dev/null; }

# wait_gone PID SECONDS: 0 once PID has exited
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while alive "$pid"; do
    (( SECONDS > deadline )) && return 1
    sleep 0.5
  done
}

# group_alive PGID: any process left in the group
group_alive() { kill -0 -- "-$1" 2>/dev/null; }

stop_one() {
  local name="$1" marker="$2" pidfile="$STATE/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if alive "$pid" && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$marker"; then
    echo "$name: pid $pid is no longer ours (pid reused); leaving it alone" >&2
    rm -f "$pidfile"; return 0
  fi
  if alive "$pid"; then
    # The leader first: `ray start --block` shuts its own processes down cleanly on SIGTERM.
    kill -TERM "$pid" 2>/dev/null
    wait_gone "$pid" "$GRACE" || kill -KILL "$pid" 2>/dev/null
  fi
  # Then whatever is left of the group the leader headed (uvicorn workers, Ray helpers).
  if group_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do group_alive "$pid" || break; sleep 0.5; done
    group_alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
  echo "stopped $name (pid $pid)"
}

# Ray first, so running jobs stop before the services they write to.
stop_one ray "ray.scripts.scripts start"
stop_one mlflow "mlflow server"
stop_one s3 "moto.server"
rm -f "$STATE/env"
