# allma: PGXS build.  See README.md for the two commands that set up and test everything.

EXTENSION = allma
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big = allma
PGFILEDESC = "allma - durable workflow engine in background workers"

OBJS = \
	src/allma.o \
	src/shmem.o \
	src/launcher.o \
	src/worker.o \
	src/store.o \
	src/engine.o \
	src/retry.o \
	src/errors.o \
	src/owner.o \
	src/flowcache.o \
	src/validate.o \
	src/api.o \
	src/jsonb_util.o \
	src/path.o \
	src/condition.o \
	src/template.o \
	src/transform.o \
	src/sqlstep.o \
	src/http.o \
	src/llm.o \
	src/prompt.o \
	src/secret.o \
	src/acl.o \
	src/secret_use.o

# 1.0 is the base install script (frozen since it shipped); later versions
# are reached through upgrade scripts, also by CREATE EXTENSION.
DATA = $(EXTENSION)--1.0.sql $(wildcard $(EXTENSION)--*--*.sql)

# pg_regress: every file in sql/, in name order (files are numbered).
REGRESS = $(sort $(notdir $(basename $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=$(srcdir)/test/allma.conf --temp-instance=./tmp_check

CURL_CONFIG ?= curl-config
PG_CPPFLAGS = -I$(srcdir)/src $(shell $(CURL_CONFIG) --cflags) -DALLMA_VERSION=\"$(EXTVERSION)\"
SHLIB_LINK = $(shell $(CURL_CONFIG) --libs)

EXTRA_CLEAN = tmp_check tmp_check_iso output_iso results regression.diffs regression.out log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on every header of the extension (PGXS has no automatic dependencies)
$(OBJS): $(wildcard $(srcdir)/src/*.h)
