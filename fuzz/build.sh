#!/usr/bin/env bash
# Fuzzing (issue 13): builds allma with sanitizers (make SANITIZE=1: gcc's
# UndefinedBehaviorSanitizer with strict bounds, every report fatal) and
# installs it into a private copy of Debian's PostgreSQL 15 under ROOT
# (scripts/dev-pgroot.sh), so the normal installation is never touched.
# Prints the PG_CONFIG of that copy.  t/068_sanitized_fuzz.pl runs it.
#
#   fuzz/build.sh ROOT [BUILD_DIR]      (BUILD_DIR default ROOT/build)
#
# SANITIZE=address (environment) also adds AddressSanitizer; see
# docs/testing.md for why the server cannot run it on Debian 12.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath -m "${1:?usage: fuzz/build.sh ROOT [BUILD_DIR]}")
BUILD=$(realpath -m "${2:-$ROOT/build}")
SANITIZE=${SANITIZE:-1}

PG_CONFIG=$("$SRC/scripts/dev-pgroot.sh" "$ROOT")
# a copy of the sources (not a VPATH build: make would take the checkout's
# own objects as up to date), without the JIT bitcode (with_llvm=no)
mkdir -p "$BUILD"
(cd "$SRC" && tar -cf - --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude='src/.*-*' \
   Makefile allma.control allma--*.sql src) | (cd "$BUILD" && tar -xf -)
cd "$BUILD"
MAKEARGS=(PG_CONFIG="$PG_CONFIG" SANITIZE="$SANITIZE" with_llvm=no)
make -s -j"${FUZZ_JOBS:-2}" "${MAKEARGS[@]}" >&2
make -s "${MAKEARGS[@]}" install >&2
echo "$PG_CONFIG"
