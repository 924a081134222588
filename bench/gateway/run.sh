#!/usr/bin/env bash
# The gateway benchmark (see run.py): installs wrk and nginx from Debian's packages when missing (as root),
# then runs it with the project's venv. Extra arguments go to run.py, e.g. --latency-seconds 20 --with-uvicorn.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "Needs ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi
[[ -x .venv/bin/python ]] || scripts/venv
exec .venv/bin/python bench/gateway/run.py "$@"
