#!/usr/bin/env bash
# Build the two images the manifests in infra/k8s run, tagged exactly as the manifests name them:
#   <title label of the Dockerfile>:<version in pyproject.toml>  ->  stark-worker:0.1.0, stark-mlflow:0.1.0
#
#   infra/docker/build.sh                                   # docker build both
#   infra/docker/build.sh --print                           # only print the two image names
#   REGISTRY=registry.example.com/ml infra/docker/build.sh --push
# With REGISTRY, point the manifests at it too (see infra/README.md, "Images").
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
title() { sed -n 's/.*org\.opencontainers\.image\.title="\([^"]*\)".*/\1/p' "$1" | head -n 1; }
prefix="${REGISTRY:+${REGISTRY%/}/}"
worker="${prefix}$(title "$HERE/Dockerfile"):${version}"
mlflow="${prefix}$(title "$HERE/mlflow.Dockerfile"):${version}"

case "${1:-}" in
  --print) echo "$worker"; echo "$mlflow"; exit 0 ;;
  ""|--push) ;;
  *) echo "usage: $0 [--print|--push]" >&2; exit 2 ;;
esac

docker build -f "$HERE/Dockerfile" -t "$worker" "$ROOT"
docker build -f "$HERE/mlflow.Dockerfile" -t "$mlflow" "$HERE"
if [[ "${1:-}" == --push ]]; then
  docker push "$worker"
  docker push "$mlflow"
fi
echo "built $worker and $mlflow"
