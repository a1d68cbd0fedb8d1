/*-------------------------------------------------------------------------
 *
 * passmark.c
 *	  Engine faults: a worker's pass mark.  A path whose step kills the
 *	  worker running it (SIGKILL, a segfault, a FATAL error) or the whole
 *	  server leaves no error for the worker to count (pathfail.c counts the
 *	  passes that fail with an ERROR, after the abort, in the process that
 *	  survived it).  So before a pass runs any step, the worker writes the
 *	  keys (execution, path, seq) of the paths it claimed to a small file of
 *	  its slot in the data directory, allma_passmark.<slot>, and empties it
 *	  when the pass has ended (committed or rolled back).  A file, not a
 *	  row: a write() reaches the kernel before the step runs and survives
 *	  the process and a crash restart of the server, and costs no commit.
 *
 *	  The next process of the slot reads what was left: the paths of the
 *	  pass that was under way when its predecessor died.  Those still at
 *	  the same step (same seq) become suspects in allma.path_failures
 *	  (crash_seq = that seq, in a transaction of its own): from then on they
 *	  are claimed only alone ("solo", by any worker).  A pass of several
 *	  paths cannot tell which one killed it, so only the death of a solo
 *	  pass is counted against its path (crashes; counted again from 0 at
 *	  another step).  A solo pass that succeeds clears its path's row; a
 *	  path whose count reached allma.max_path_crashes is not run again but
 *	  quarantined (pathfail.c, errorName PathQuarantined).
 *
 *	  Exits that are no path's fault leave no mark: a worker terminated by
 *	  SIGTERM (pg_terminate_backend, a shutdown) or exiting because the
 *	  postmaster died empties its mark on the way out.  A server crash
 *	  caused by another process (the others get SIGQUIT, with no time to
 *	  clean up) counts one crash against the paths of every pass under way;
 *	  those succeed when run alone, which clears their counts.
 *
 * IDENTIFICATION
 *	  src/passmark.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "passmark.h"
#include "pathstate.h"
#include "store.h"

#define PASSMARK_MAGIC 0x616C6D31	/* "alm1" */
#define PASSMARK_MAX_ENTRIES 10000	/* allma.batch_size's maximum */

typedef struct PassMarkHeader
{
	uint32		magic;
	int32		count;
} PassMarkHeader;

int			allma_max_path_crashes = 3;

static int	mark_fd = -1;
static bool mark_set = false;
static volatile sig_atomic_t terminating = false;
static SPIPlanPtr crash_plan = NULL;

void
allma_passmark_define_gucs(void)
{
	DefineCustomIntVariable("allma.max_path_crashes",
							"Sets how many crashes of its worker quarantine a path.",
							"A path whose worker died (killed, crashed, FATAL error) while it ran "
							"this many times is not run again: it fails with errorName PathQuarantined.",
							&allma_max_path_crashes,
							3, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

/* SIGTERM arrived (called from the signal handler): exiting is no path's fault */
void
allma_passmark_terminating(void)
{
	terminating = true;
}

static void
write_count(int32 count)
{
	PassMarkHeader h;

	h.magic = PASSMARK_MAGIC;
	h.count = count;
	if (pwrite(mark_fd, &h, sizeof(h), 0) != sizeof(h))
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("allma could not write its pass mark: %m")));
}

static void
passmark_exit(int code, Datum arg)
{
	if (mark_fd < 0)
		return;
	if (mark_set && (terminating || !PostmasterIsAlive()))
		write_count(0);
	close(mark_fd);
	mark_fd = -1;
}

/*
 * allma_passmark_open opens the mark of this slot and returns the entries
 * its previous process left (allocated in TopMemoryContext; 0: none), then
 * empties it.
 */
int
allma_passmark_open(int slot, AllmaPassMarkEntry **left)
{
	char		path[MAXPGPATH];
	PassMarkHeader h;
	int			n = 0;

	*left = NULL;
	snprintf(path, sizeof(path), "%s/allma_passmark.%d", DataDir, slot);
	mark_fd = open(path, O_RDWR | O_CREAT | PG_BINARY, 0600);
	if (mark_fd < 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("allma could not open its pass mark \"%s\": %m", path),
				 errdetail("A path that kills this worker will not be quarantined.")));
		return 0;
	}
	if (pread(mark_fd, &h, sizeof(h), 0) == sizeof(h) &&
		h.magic == PASSMARK_MAGIC && h.count > 0 && h.count <= PASSMARK_MAX_ENTRIES)
	{
		AllmaPassMarkEntry *e = MemoryContextAlloc(TopMemoryContext,
												   sizeof(AllmaPassMarkEntry) * h.count);
		ssize_t		want = sizeof(AllmaPassMarkEntry) * h.count;

		if (pread(mark_fd, e, want, sizeof(h)) == want)
		{
			*left = e;
			n = h.count;
		}
		else
			pfree(e);
	}
	write_count(0);
	before_shmem_exit(passmark_exit, (Datum) 0);
	return n;
}

/* allma_passmark_set: the pass under way holds these paths (AllmaPathState *) */
void
allma_passmark_set(List *paths)
{
	int			n = Min(list_length(paths), PASSMARK_MAX_ENTRIES);
	Size		len = sizeof(PassMarkHeader) + sizeof(AllmaPassMarkEntry) * n;
	char	   *buf;
	PassMarkHeader *h;
	AllmaPassMarkEntry *e;
	ListCell   *lc;
	int			i = 0;

	if (mark_fd < 0 || n == 0)
		return;
	buf = palloc0(len);
	h = (PassMarkHeader *) buf;
	e = (AllmaPassMarkEntry *) (buf + sizeof(PassMarkHeader));
	h->magic = PASSMARK_MAGIC;
	h->count = n;
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (i >= n)
			break;
		e[i].execution_id = ps->execution_id;
		e[i].path_id = ps->path_id;
		e[i].seq = ps->seq;
		i++;
	}
	if (pwrite(mark_fd, buf, len, 0) != (ssize_t) len)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("allma could not write its pass mark: %m")));
	pfree(buf);
	mark_set = true;
}

/* allma_passmark_clear: the pass has ended (committed or rolled back) */
void
allma_passmark_clear(void)
{
	if (mark_fd < 0 || !mark_set)
		return;
	write_count(0);
	mark_set = false;
}

void
allma_passmark_reset(void)
{
	if (crash_plan != NULL)
		SPI_freeplan(crash_plan);
	crash_plan = NULL;
}

/*
 * allma_passmark_record_crash handles one path of a dead worker's pass, if
 * the path is still at the step it was at (a path that went on since did not
 * crash anything).  Only a pass of one path ("solo") pins the crash on its
 * path: its count goes up.  A pass of several cannot tell which one killed
 * it: each is only marked a suspect (crash_seq set, its count kept), so that
 * it is run alone from then on.  SPI connected, in a transaction of its own.
 */
void
allma_passmark_record_crash(const AllmaPassMarkEntry *entry, bool solo)
{
	Datum		args[4];

	if (crash_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT8OID, INT4OID, INT4OID};

		crash_plan = allma_store_prepare("INSERT INTO allma.path_failures AS f "
										 "  (execution_id, path_id, failures, crashes, crash_seq, last_error) "
										 "SELECT $1, $2, 0, $4, $3, "
										 "  'the worker running it died (killed, crashed or a FATAL error)' "
										 " WHERE EXISTS (SELECT FROM allma.execution_paths p "
										 "   WHERE p.execution_id = $1 AND p.path_id = $2 AND p.seq = $3 "
										 "     AND p.status IN ('READY', 'INFLIGHT')) "
										 "ON CONFLICT (execution_id, path_id) DO UPDATE "
										 "SET crashes = CASE WHEN f.crash_seq = $3 THEN f.crashes ELSE 0 END + $4, "
										 "    crash_seq = $3, last_error = excluded.last_error, "
										 "    last_failed_at = clock_timestamp()", 4, types);
	}
	args[0] = UUIDPGetDatum(&entry->execution_id);
	args[1] = Int64GetDatum(entry->path_id);
	args[2] = Int32GetDatum(entry->seq);
	args[3] = Int32GetDatum(solo ? 1 : 0);
	if (SPI_execute_plan(crash_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record a crashed pass of an allma path");
}
