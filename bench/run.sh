#!/usr/bin/env bash
# allma benchmarks.  Builds and installs the extension, starts a throwaway
# cluster (the same settings for every measurement, see bench/lib.sh) and
# runs the scenarios of bench/scenarios/, each RUNS times; medians are
# reported, with the machine's own pgbench -N baseline measured in the
# same run.  Results go to bench/RESULTS.md (or --out) and stdout.
#
#   bench/run.sh [--runs N] [--seconds S] [--compare PG_CONFIG] [--out FILE] [SCENARIO...]
#
# SCENARIO: file names of bench/scenarios/ without .sh (default: baseline
# chain latency fork http kills workers).  The baseline always runs first.
# --compare PG_CONFIG: also measure the allma installed in that PostgreSQL
# installation (e.g. a private copy made by scripts/dev-pgroot.sh holding an
# older build), scenario by scenario right after this build's, each on a
# fresh cluster of its own: a same-run comparison.
# PG_CONFIG selects the installation this build goes to (default: Debian's 15).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
RUNS=3
SECONDS_PGBENCH=20
COMPARE=
OUT="$SRC/bench/RESULTS.md"
SCENARIOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_PGBENCH=$2; shift 2 ;;
    --compare) COMPARE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -*) echo "usage: $0 [--runs N] [--seconds S] [--compare PG_CONFIG] [--out FILE] [SCENARIO...]" >&2; exit 2 ;;
    *) SCENARIOS+=("$1"); shift ;;
  esac
done
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(chain latency fork http kills workers)
SCENARIOS=(baseline "${SCENARIOS[@]/baseline}")

"$SRC/scripts/install-deps.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

source "$SRC/bench/lib.sh"
for s in "${SCENARIOS[@]}"; do
  [ -z "$s" ] && continue
  [ -f "$SRC/bench/scenarios/$s.sh" ] || { echo "no scenario bench/scenarios/$s.sh" >&2; exit 2; }
  source "$SRC/bench/scenarios/$s.sh"
done

WORK=$(mktemp -d /tmp/allma-bench.XXXXXX)
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK"
MOCK_PID=
DATA=
cleanup() {
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
  bench_stop
  # BENCH_KEEP=1 keeps the work directory (server logs) for a look afterwards
  if [ -n "${BENCH_KEEP:-}" ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

BUILDS=(this)
declare -A BINDIRS=([this]=$("$PG_CONFIG" --bindir))
if [ -n "$COMPARE" ]; then
  BUILDS+=(base)
  BINDIRS[base]=$("$COMPARE" --bindir)
fi

# one report file per build; rows are "key<TAB>label<TAB>value<TAB>target"
for b in "${BUILDS[@]}"; do : > "$WORK/report.$b"; done
for s in "${SCENARIOS[@]}"; do
  [ -z "$s" ] && continue
  for b in "${BUILDS[@]}"; do
    # the baseline does not depend on allma: measured once, on this build's cluster
    [ "$s" = baseline ] && [ "$b" != this ] && continue
    echo "== $s ($b build)"
    bench_start "${BINDIRS[$b]}" "$b"
    REPORT_FILE="$WORK/report.$b"
    "scenario_$s"
    bench_stop
  done
done

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
PGV=$("${BINDIRS[this]}/postgres" --version | sed 's/^postgres (PostgreSQL) //')
GIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$SRC" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
{
  echo "# allma benchmark results"
  echo
  echo "Produced by \`bench/run.sh ${SCENARIOS[*]}\` (medians of $RUNS runs, all measured in one run);"
  echo "how these compare with the targets, and why: [NOTES.md](NOTES.md)."
  echo
  echo "| machine | value |"
  echo "| --- | --- |"
  echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
  echo "| commit | $GIT$DIRTY |"
  [ -n "$COMPARE" ] && echo "| compared with | the allma installed under $("$COMPARE" --bindir | sed 's|/usr/lib/postgresql.*||') (column \"base\"), measured right after this build, scenario by scenario |"
  echo "| CPU | $CPU, $(nproc) cores |"
  echo "| memory | $(free -g | awk '/^Mem:/ {print $2}') GiB |"
  echo "| PostgreSQL | $PGV |"
  echo "| server settings | shared_buffers = 128MB, max_worker_processes = 40, max_wal_size = 4GB, checkpoint_timeout = 30min, synchronous_commit = on (default), allma.max_workers = 2, other allma settings at their defaults unless a row names them |"
  echo
  if [ -n "$COMPARE" ]; then
    echo "| measurement | this build | base | target |"
    echo "| --- | --- | --- | --- |"
  else
    echo "| measurement | result | target |"
    echo "| --- | --- | --- |"
  fi
  while IFS=$'\t' read -r key label value target; do
    if [ -n "$COMPARE" ]; then
      base=$(awk -F'\t' -v k="$key" '$1 == k {print $3}' "$WORK/report.base")
      echo "| $label | $value | ${base:-(one baseline for both)} | $target |"
    else
      echo "| $label | $value | $target |"
    fi
  done < "$WORK/report.this"
  echo
  echo "RssAnon is a worker's private memory, sampled every 50 ms; VmHWM its peak resident set since it"
  echo "started, which also counts the shared-buffer pages it touched. Write transactions are counted by"
  echo "transaction ids assigned (commits, plus subtransactions that wrote)."
} > "$OUT"
echo
cat "$OUT"
