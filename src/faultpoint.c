/*-------------------------------------------------------------------------
 *
 * faultpoint.c
 *	  Engine faults: fault points, compiled only into a test build.
 *
 * In a build made with "make FAULT_INJECTION=1", allma.fault_point
 * (superuser, reload) names one fault point and what it does when reached:
 * 'after-claim:error', 'before-join:sigkill', ...; 'wait' waits in the
 * pass for pg_advisory_xact_lock(7277), which a test holds to keep a
 * worker inside a pass.  Each fault fires once:
 * when it fires it creates the file allma_fault_fired.<name> in the data
 * directory, and while that file exists the point does nothing -- so a
 * fault that kills the server does not kill it again after the restart.
 * A test removes the file (or sets another point) to fire again.
 *
 * In any other build this file defines nothing but an empty
 * allma_faultpoint_define_gucs: no setting, no code at the points.
 *
 * IDENTIFICATION
 *	  src/faultpoint.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "faultpoint.h"

#ifdef ALLMA_FAULT_INJECTION

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"

/* action 'wait': the transaction-level advisory lock the point waits for */
#define ALLMA_FAULT_WAIT_LOCK 7277

static char *allma_fault_point_setting = NULL;

void
allma_faultpoint_define_gucs(void)
{
	DefineCustomStringVariable("allma.fault_point",
							   "Test builds only: the fault point that fails, and how.",
							   "'<name>:<error|fatal|sigkill|wait>'; empty: none.  Each fires once "
							   "(until the file allma_fault_fired.<name> in the data directory is removed).",
							   &allma_fault_point_setting, "", PGC_SIGHUP, GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
}

void
allma_fault_point(const char *name)
{
	const char *setting = allma_fault_point_setting;
	size_t		len = strlen(name);
	const char *action;
	char		marker[MAXPGPATH];
	int			fd;

	if (setting == NULL || strncmp(setting, name, len) != 0 || setting[len] != ':')
		return;
	action = setting + len + 1;
	snprintf(marker, sizeof(marker), "%s/allma_fault_fired.%s", DataDir, name);
	fd = open(marker, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0)
		return;					/* fired already (or cannot tell): not again */
	close(fd);

	if (strcmp(action, "sigkill") == 0)
	{
		ereport(LOG, (errmsg("allma fault point \"%s\": SIGKILL", name)));
		(void) kill(MyProcPid, SIGKILL);
		pg_usleep(10 * 1000000L);	/* the signal arrives first */
	}
	if (strcmp(action, "wait") == 0)
	{
		/* held by a test: the pass goes on once the test lets go */
		ereport(LOG, (errmsg("allma fault point \"%s\": waiting for advisory lock %d",
							 name, ALLMA_FAULT_WAIT_LOCK)));
		(void) DirectFunctionCall1(pg_advisory_xact_lock_int8,
								   Int64GetDatum(ALLMA_FAULT_WAIT_LOCK));
		return;
	}
	if (strcmp(action, "fatal") == 0)
		ereport(FATAL,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("allma fault point \"%s\": FATAL", name)));
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("allma fault point \"%s\": ERROR", name)));
}

/*
 * allma_fault_point_step: the poison step.  With allma.fault_point =
 * 'step=<id>:<action>' every attempt of a step whose instance id is <id>
 * fails so, each time (no marker file): a path that keeps killing its
 * worker, for the crash quarantine (passmark.c, t/039_crash_quarantine.pl).
 */
void
allma_fault_point_step(const char *step_id)
{
	const char *setting = allma_fault_point_setting;
	size_t		len;
	const char *action;

	if (setting == NULL || step_id == NULL || strncmp(setting, "step=", 5) != 0)
		return;
	setting += 5;
	len = strlen(step_id);
	if (strncmp(setting, step_id, len) != 0 || setting[len] != ':')
		return;
	action = setting + len + 1;
	if (strcmp(action, "sigkill") == 0)
	{
		ereport(LOG, (errmsg("allma fault point step \"%s\": SIGKILL", step_id)));
		(void) kill(MyProcPid, SIGKILL);
		pg_usleep(10 * 1000000L);	/* the signal arrives first */
	}
	if (strcmp(action, "fatal") == 0)
		ereport(FATAL,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("allma fault point step \"%s\": FATAL", step_id)));
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("allma fault point step \"%s\": ERROR", step_id)));
}

#else							/* !ALLMA_FAULT_INJECTION */

void
allma_faultpoint_define_gucs(void)
{
}

#endif
