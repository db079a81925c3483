#!/bin/sh
# Resume timings next to cold and warm starts, Docker provider, through the CLI:
#   HS=target/debug/headstart REPO=/path/to/a/git/repository N=5 sh xtask/bench-resume.sh
# Prints, per repetition, milliseconds from each command's own --json report (cold and
# warm: total_ms; resume: resumed.ms) and the wall time of the resuming `exec` process.
# A stopped sandbox is made with `docker kill` (what the idle stop does); everything
# runs in a fresh HEADSTART_HOME, removed at the end. Needs a Docker engine.
set -eu
HS=${HS:-target/debug/headstart}
REPO=${REPO:?a git repository}
N=${N:-5}
export HEADSTART_HOME=$(mktemp -d) HEADSTART_FEATURE_FLAGS_DISABLED=1
ms() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
for i in $(seq $N); do printf 'cold %s\n' "$($HS up "$REPO" --provider docker --no-snapshot --name c$i --json | ms 'v["total_ms"]')"; done
$HS up "$REPO" --provider docker --name w0 --wait-snapshot --json >/dev/null
for i in $(seq $N); do printf 'warm %s\n' "$($HS up "$REPO" --provider docker --name w$i --json | ms '(v["path"], v["total_ms"])')"; done
$HS up "$REPO" --provider docker --name r --no-snapshot --json >/dev/null
for i in $(seq $N); do
  docker kill "$($HS ls --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["name"]=="r"][0])')" >/dev/null
  t0=$(date +%s%N); out=$($HS exec --json r true); t1=$(date +%s%N)
  printf 'resume-stopped %s exec-wall %s\n' "$(echo "$out" | ms 'v["resumed"]["ms"]')" $(( (t1-t0)/1000000 ))
done
for i in $(seq $N); do
  h=$($HS hibernate r --json | ms 'v["duration_ms"]')
  t0=$(date +%s%N); out=$($HS exec --json r true); t1=$(date +%s%N)
  printf 'hibernate %s resume-hibernated %s exec-wall %s\n' "$h" "$(echo "$out" | ms 'v["resumed"]["ms"]')" $(( (t1-t0)/1000000 ))
done
for i in $(seq $N); do t0=$(date +%s%N); $HS exec --json r true >/dev/null; t1=$(date +%s%N); printf 'exec-running-wall %s\n' $(( (t1-t0)/1000000 )); done
$HS down --all >/dev/null; rm -rf "$HEADSTART_HOME"
