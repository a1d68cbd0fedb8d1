#!/usr/bin/env bash
# Development helper: makes a private, relocated copy of Debian's PostgreSQL 15
# under DIR, so that several checkouts can "make install" and test side by
# side without overwriting each other's allma.so.  Prints the PG_CONFIG to use:
#   PG_CONFIG=$(scripts/dev-pgroot.sh /tmp/pgroot-me) scripts/test.sh regress
set -euo pipefail
DIR=${1:?usage: dev-pgroot.sh DIR}
if [ ! -x "$DIR/usr/lib/postgresql/15/bin/pg_config" ]; then
  mkdir -p "$DIR/usr/lib/postgresql" "$DIR/usr/share/postgresql" "$DIR/usr/include"
  cp -a /usr/lib/postgresql/15 "$DIR/usr/lib/postgresql/"
  cp -a /usr/share/postgresql/15 "$DIR/usr/share/postgresql/"
  cp -a /usr/include/postgresql "$DIR/usr/include/"
  chmod -R a+rX "$DIR"
fi
echo "$DIR/usr/lib/postgresql/15/bin/pg_config"
