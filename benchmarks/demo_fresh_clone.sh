#!/bin/bash
# Time `make demo` from fresh clones of two commits, back to back, alternating, ROUNDS times:
#   benchmarks/demo_fresh_clone.sh OLD_COMMIT NEW_COMMIT [ROUNDS]  ->  demo_timing.txt (one line per run)
# Each run clones this repository into /tmp, checks the commit out and runs `make demo` there
# (venv, install, demo), as a new user would. Run it on an otherwise idle machine; the wall time
# includes the install (about a minute with a warm pip cache).
set -u
OLD=${1:?old commit}
NEW=${2:?new commit}
ROUNDS=${3:-2}
REPO=$(git rev-parse --show-toplevel)
OUT=${OUT:-$REPO/demo_timing.txt}
for round in $(seq "$ROUNDS"); do
  for which in old new; do
    commit=$([ "$which" = old ] && echo "$OLD" || echo "$NEW")
    dir=/tmp/decovlm_clone_${which}_${round}
    rm -rf "$dir" && git clone -q "$REPO" "$dir" && git -C "$dir" checkout -q "$commit"
    start=$(date +%s.%N)
    (cd "$dir" && make demo > "$dir.log" 2>&1)
    rc=$?
    end=$(date +%s.%N)
    echo "$which round $round commit $commit rc $rc wall_s $(echo "$end - $start" | bc)" \
         "load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT"
  done
done
