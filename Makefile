# allma: PGXS build.  See README.md for the two commands that set up and test everything.

EXTENSION = allma
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(srcdir)/$(EXTENSION).control)
MODULE_big = allma
PGFILEDESC = "allma - durable workflow engine in background workers"

OBJS = \
	src/allma.o \
	src/shmem.o \
	src/listeners.o \
	src/launcher.o \
	src/worker.o \
	src/worker_gate.o \
	src/http_limits.o \
	src/parsecache.o \
	src/xactmemo.o \
	src/textutil.o \
	src/path_parse.o \
	src/template_parse.o \
	src/template_ws.o \
	src/template_helpers.o \
	src/http_allowlist.o \
	src/http_transfer.o \
	src/http_sql.o \
	src/store.o \
	src/store_forks.o \
	src/priority.o \
	src/engine.o \
	src/retry.o \
	src/errors.o \
	src/owner.o \
	src/flowcache.o \
	src/validate.o \
	src/defcheck.o \
	src/api.o \
	src/jsonb_util.o \
	src/path.o \
	src/condition.o \
	src/template.o \
	src/step.o \
	src/steps/fork.o \
	src/large_value.o \
	src/steps/api.o \
	src/steps/mcp.o \
	src/steps/file.o \
	src/steps/llm.o \
	src/steps/email.o \
	src/steps/mime.o \
	src/steps/sql.o \
	src/steps/transform.o \
	src/steps/join.o \
	src/steps/module.o \
	src/steps/simple.o \
	src/steps/unsupported.o \
	src/http.o \
	src/llm/provider.o \
	src/llm/openai.o \
	src/llm/anthropic.o \
	src/llm/gemini.o \
	src/llm/json_output.o \
	src/prompt.o \
	src/secret.o \
	src/steps/aws_modules.o \
	src/picture.o \
	src/graph.o \
	src/timeline.o \
	src/modules/aws.o \
	src/modules/dynamodb.o \
	src/modules/dynamodb_expr.o \
	src/modules/dynamodb_eval.o \
	src/modules/dynamodb_store.o \
	src/modules/dynamodb_tables.o \
	src/modules/s3.o \
	src/acl.o \
	src/secret_use.o
# Allma compatibility: email triggers
OBJS += \
	src/mail_parse.o \
	src/email_ingest.o
# Observability: progress, trees, statistics, worker status
OBJS += \
	src/observe.o
# concurrency keys
OBJS += \
	src/concurrency.o
# rate limits
OBJS += \
	src/ratelimit.o
# execution lifecycle: waits, cancel, timeouts, step budget
OBJS += \
	src/lifecycle.o \
	src/steps/wait.o

# Allma compatibility: bundle import/export
OBJS += \
	src/bundle_defs.o \
	src/bundle_import.o \
	src/bundle_export.o

# sub-flows and redrive
OBJS += \
	src/steps/subflow.o \
	src/redrive.o

# Operations: retention, completion actions, schedules
OBJS += \
	src/retention.o \
	src/steps/completion.o \
	src/schedule.o

# Faults and limits: engine faults
OBJS += \
	src/pathfail.o \
	src/passmark.o \
	src/faultpoint.o

# faults and limits
OBJS += \
	src/limit_gucs.o \
	src/text_valid.o \
	src/drop_guard.o \
	src/http_budget_probe.o

# perfmix: saved plans of the API's statements
OBJS += \
	src/spicache.o

# 1.0 is the base install script (frozen since it shipped); later versions
# are reached through upgrade scripts, also by CREATE EXTENSION.
DATA = $(EXTENSION)--1.0.sql $(notdir $(wildcard $(srcdir)/$(EXTENSION)--*--*.sql))

# Tests, against the installed extension ("make install" first).  Each
# target starts its own temporary servers with the installation PG_CONFIG
# names, so run it as a user that may start PostgreSQL (not root) in a
# checkout that user can write.  scripts/test.sh runs them all (and the mock
# server's self-test), as the postgres user when started as root.
#   make installcheck          pg_regress: sql/*.sql against expected/
#   make isolationcheck        isolation specs: specs/*.spec
#   make prove_installcheck    TAP: t/*.pl (PROVE_TESTS='t/011_api_call.pl' for some)
# The servers run with test/allma.conf (allma preloaded, fast timers).

# pg_regress: every file in sql/, in name order (files are numbered).
REGRESS = $(sort $(notdir $(basename $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=$(srcdir)/test/allma.conf --temp-instance=./tmp_check

# isolation specs (not ISOLATION: PGXS would run them in installcheck too)
ISOLATION_SPECS = $(sort $(notdir $(basename $(wildcard specs/*.spec))))
ISOLATION_SPECS_OPTS = --temp-config=$(srcdir)/test/allma.conf --temp-instance=./tmp_check_iso \
	--outputdir=output_iso --dbname=contrib_regression

CURL_CONFIG ?= curl-config
# the library's release and the extension version it needs (schema gate,
# src/worker.c) both come from allma.control's default_version
PG_CPPFLAGS = -I$(srcdir)/src $(shell $(CURL_CONFIG) --cflags) -DALLMA_VERSION=\"$(EXTVERSION)\" \
	-DALLMA_SCHEMA_VERSION=\"$(EXTVERSION)\"
SHLIB_LINK = $(shell $(CURL_CONFIG) --libs)

# what the test targets leave behind (pg_regress: results/, log/,
# regression.*; isolation: output_iso/, tmp_check_iso/; TAP: tmp_check/)
EXTRA_CLEAN = results log regression.diffs regression.out tmp_check output_iso tmp_check_iso \
	src/.fault-injection-on src/.fault-injection-off \
	src/.sanitize-1 src/.sanitize-address src/.sanitize-off

# Faults and limits (engine faults): a test build with fault points
# (src/faultpoint.h): make FAULT_INJECTION=1
ifeq ($(FAULT_INJECTION),1)
PG_CPPFLAGS += -DALLMA_FAULT_INJECTION
endif

# Fuzzing (issue 13): a sanitized build for fuzz/build.sh and
# t/068_sanitized_fuzz.pl: make SANITIZE=1 builds with gcc's
# UndefinedBehaviorSanitizer (plus strict array bounds), every report fatal
# (the backend aborts, the server log names the check).  SANITIZE=address
# adds AddressSanitizer; PostgreSQL itself is not instrumented, so the server
# would need the ASan runtime in LD_PRELOAD, and on Debian 12 PostgreSQL's
# programs deadlock at start with it (docs/testing.md).
ifneq ($(filter 1 address,$(SANITIZE)),)
SANITIZE_FLAGS = -fsanitize=undefined -fsanitize=bounds-strict -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -g
ifeq ($(SANITIZE),address)
SANITIZE_FLAGS += -fsanitize=address -O1
endif
PG_CFLAGS += $(SANITIZE_FLAGS)
PG_LDFLAGS += $(SANITIZE_FLAGS)
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on every header of the extension (PGXS has no automatic
# dependencies), and on the control file that sets the version macros
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h) $(srcdir)/$(EXTENSION).control

# Building outside the source tree (make -f SRC/Makefile VPATH=SRC, as
# Debian's pg_buildext does in build-<version>/): the objects go to src/.
ifneq ($(VPATH),)
$(shell mkdir -p $(sort $(dir $(OBJS))))
endif

.PHONY: isolationcheck prove_installcheck

isolationcheck:
	$(pg_isolation_regress_installcheck) $(ISOLATION_SPECS_OPTS) $(ISOLATION_SPECS)

# PostgreSQL's TAP harness (PostgreSQL::Test::Cluster) from the installation
prove_installcheck:
	$(prove_installcheck)

# Faults and limits (engine faults): switching between a test build
# (FAULT_INJECTION=1) and a normal one rebuilds everything, so that a
# fault-injection object never ends up in a normal build
#
# The stamp of the wanted build is made while the Makefile is read, not by a
# rule: PGXS's Makefile.global declares ".SECONDARY:" with no prerequisites,
# which makes every file an intermediate one, and make does not rebuild a
# target because an intermediate prerequisite is missing.  So a missing
# stamp rebuilt nothing by itself, only the objects make happened to
# consider after something else had made it remake the stamp: a switch
# left objects of both builds in one library.
FAULT_STAMP = src/.fault-injection-$(if $(filter 1,$(FAULT_INJECTION)),on,off)
ifeq ($(wildcard $(FAULT_STAMP)),)
$(shell mkdir -p src && rm -f src/.fault-injection-on src/.fault-injection-off && touch $(FAULT_STAMP))
endif
$(OBJS): $(FAULT_STAMP)
$(FAULT_STAMP):
	mkdir -p $(dir $@)
	rm -f src/.fault-injection-on src/.fault-injection-off
	touch $@

# Fuzzing (issue 13): switching between a sanitized build (SANITIZE=1) and a
# normal one rebuilds everything too
SANITIZE_STAMP = src/.sanitize-$(if $(filter 1 address,$(SANITIZE)),$(SANITIZE),off)
ifeq ($(wildcard $(SANITIZE_STAMP)),)
$(shell mkdir -p src && rm -f src/.sanitize-1 src/.sanitize-address src/.sanitize-off && touch $(SANITIZE_STAMP))
endif
$(OBJS): $(SANITIZE_STAMP)
$(SANITIZE_STAMP):
	mkdir -p $(dir $@)
	rm -f src/.sanitize-1 src/.sanitize-address src/.sanitize-off
	touch $@

# The LLVM bitcode PGXS builds next to each object (installed for JIT
# inlining) depends on the same headers and build switches: without this,
# switching between a test build and a normal one (or changing a header)
# rebuilt the objects but left the old bitcode, so the installed bitcode
# no longer matched the library
ifeq ($(with_llvm), yes)
$(patsubst %.o,%.bc,$(OBJS)): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h) $(srcdir)/$(EXTENSION).control
$(patsubst %.o,%.bc,$(OBJS)): $(FAULT_STAMP) $(SANITIZE_STAMP)
endif
