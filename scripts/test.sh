#!/usr/bin/env bash
# Runs allma's whole test suite: pg_regress (sql/), isolation specs (specs/),
# TAP tests (t/) and the mock server's own self-test (mock/).  Installs
# missing Debian packages, builds and installs the extension first.  Exits
# non-zero on any failure, and when a part of the suite is missing (a
# missing directory is an incomplete suite, not a passing one).
#
#   scripts/test.sh                      everything
#   scripts/test.sh regress [NAME...]    only pg_regress (optionally some files)
#   scripts/test.sh isolation [NAME...]  only isolation specs
#   scripts/test.sh tap [t/FILE.pl...]   only TAP tests
#   scripts/test.sh mock                 only the mock server's self-test
#
# PG_CONFIG selects the PostgreSQL installation (default: Debian's 15);
# TMPDIR where the scratch directory goes (default /tmp).
# Servers run as the "postgres" user when this script runs as root (CI).
set -euo pipefail

cd "$(dirname "$0")/.."
SRC=$(pwd)

"$SRC/scripts/install-deps.sh"

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/../..
PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
PG_ISOLATION="$PGXS_DIR/src/test/isolation/pg_isolation_regress"

what=${1:-all}
shift || true

# every part of the suite must be there
for part in sql expected specs t mock test; do
  if [ ! -d "$SRC/$part" ]; then
    echo "test.sh: $part/ is missing: the test suite is incomplete" >&2
    exit 1
  fi
done

# A test build: the fault points of src/faultpoint.h are compiled in (they
# do nothing unless allma.fault_point names one; t/037 uses them).  Set
# ALLMA_FAULT_INJECTION=0 to test a normal build.  The Makefile rebuilds
# everything when the kind of build changes, so a later plain "make" never
# mixes in fault-injection objects.
FAULT_INJECTION=${ALLMA_FAULT_INJECTION:-1}
echo "== building allma (FAULT_INJECTION=$FAULT_INJECTION)"
make -s PG_CONFIG="$PG_CONFIG" FAULT_INJECTION="$FAULT_INJECTION" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" FAULT_INJECTION="$FAULT_INJECTION" install >/dev/null

if [ "$(id -u)" -eq 0 ]; then
  AS_PG=(runuser -u postgres --)
else
  AS_PG=()
fi

# A scratch directory the server's user can write (the clone may be root's),
# under $TMPDIR (default /tmp; the server's user must be able to reach it).
WORK=$(mktemp -d "${TMPDIR:-/tmp}/allma-test.XXXXXX")
cp -r "$SRC/sql" "$SRC/expected" "$SRC/test" "$SRC/specs" "$SRC/t" "$SRC/mock" "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$WORK"
export ALLMA_SRC="$SRC"

failed=0
regress_passed=0
summary=()

run_regress() {
  local tests=("$@")
  if [ ${#tests[@]} -eq 0 ]; then
    for f in "$WORK"/sql/*.sql; do [ -f "$f" ] && tests+=("$(basename "$f" .sql)"); done
  fi
  if [ ${#tests[@]} -eq 0 ]; then no_tests "pg_regress tests"; return; fi
  echo "== pg_regress: ${#tests[@]} tests"
  if (cd "$WORK" && "${AS_PG[@]}" "$PG_REGRESS" \
        --bindir="$BINDIR" --inputdir=. --outputdir="$WORK/regress" \
        --temp-instance="$WORK/regress/tmp_check" --temp-config=test/allma.conf \
        --dbname=contrib_regression "${tests[@]}"); then
    summary+=("pg_regress: ok")
  else
    failed=1
    summary+=("pg_regress: FAILED")
    [ -f "$WORK/regress/regression.diffs" ] && head -c 20000 "$WORK/regress/regression.diffs"
    mkdir -p "$SRC/results" && cp -r "$WORK/regress/results/." "$SRC/results/" 2>/dev/null || true
  fi
}

# no_tests KIND: a part of the suite without any test fails the run
no_tests() {
  echo "test.sh: no $1 found: the test suite is incomplete" >&2
  failed=1
  summary+=("$1: FAILED (none found)")
}

run_isolation() {
  local tests=("$@")
  if [ ${#tests[@]} -eq 0 ]; then
    for f in "$WORK"/specs/*.spec; do [ -f "$f" ] && tests+=("$(basename "$f" .spec)"); done
  fi
  if [ ${#tests[@]} -eq 0 ]; then no_tests "isolation specs"; return; fi
  echo "== isolation: ${#tests[@]} specs"
  mkdir -p "$WORK/isolation"
  [ "$(id -u)" -eq 0 ] && chown postgres "$WORK/isolation"
  if (cd "$WORK" && "${AS_PG[@]}" "$PG_ISOLATION" \
        --bindir="$BINDIR" --inputdir=. --outputdir="$WORK/isolation" \
        --temp-instance="$WORK/isolation/tmp_check" --temp-config=test/allma.conf \
        --dbname=contrib_regression "${tests[@]}"); then
    summary+=("isolation: ok")
  else
    failed=1
    summary+=("isolation: FAILED")
    [ -f "$WORK/isolation/regression.diffs" ] && head -c 20000 "$WORK/isolation/regression.diffs"
  fi
}

run_tap() {
  local files=("$@")
  if [ ${#files[@]} -eq 0 ]; then
    for f in "$WORK"/t/*.pl; do [ -f "$f" ] && files+=("t/$(basename "$f")"); done
  fi
  if [ ${#files[@]} -eq 0 ]; then no_tests "TAP tests"; return; fi
  echo "== TAP: ${#files[@]} files"
  if (cd "$WORK" && "${AS_PG[@]}" env PATH="$BINDIR:$PATH" PG_REGRESS="$PG_REGRESS" \
        ALLMA_SRC="$SRC" prove -I "$PGXS_DIR/src/test/perl" -I t "${files[@]}"); then
    summary+=("TAP: ok")
  else
    failed=1
    summary+=("TAP: FAILED")
    for log in "$WORK"/tmp_check/log/regress_log_*; do
      [ -f "$log" ] && { echo "---- $log (tail)"; tail -n 60 "$log"; }
    done
  fi
}

# the mock server's self-test (python unittest): the TAP tests trust the
# mock, so the mock's own behaviour is checked first
run_mock() {
  if [ ! -f "$WORK/mock/test_mock_server.py" ]; then no_tests "mock self-test"; return; fi
  echo "== mock self-test"
  if (cd "$WORK" && "${AS_PG[@]}" python3 mock/test_mock_server.py); then
    summary+=("mock self-test: ok")
  else
    failed=1
    summary+=("mock self-test: FAILED")
  fi
}

case "$what" in
  all) run_mock; run_regress; run_isolation; run_tap ;;
  regress) run_regress "$@" ;;
  isolation) run_isolation "$@" ;;
  tap) run_tap "$@" ;;
  mock) run_mock ;;
  *) echo "usage: $0 [all|regress|isolation|tap|mock] [names...]" >&2; exit 2 ;;
esac

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ $failed -eq 0 ]; then
  rm -rf "$WORK"
else
  echo "(scratch directory kept: $WORK)"
fi
exit $failed
