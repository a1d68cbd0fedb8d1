/*-------------------------------------------------------------------------
 *
 * limit_gucs.c
 *	  The settings that bound what one definition, input or server response
 *	  may cost (template rendering work and output, the input of
 *	  allma_start_flow, a server's Retry-After), and the consent that lets
 *	  DROP EXTENSION allma drop running executions (drop_guard.c).
 *	  docs/limits.md lists every limit, its default, its error and the test
 *	  that backs it.
 *
 * The template bounds protect the server (a template bomb must not exhaust
 * memory and bring the cluster down), so raising them is the
 * administrator's: PGC_SUSET, set in postgresql.conf for the workers or by
 * a superuser for a session.  The worker settings are PGC_SIGHUP like
 * allma.c's.
 *
 * IDENTIFICATION
 *	  src/limit_gucs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"
#include "utils/memutils.h"

#include "drop_guard.h"
#include "limit_gucs.h"

int			allma_template_max_iterations = 1000000;
int			allma_template_max_output = 16 * 1024 * 1024;
int			allma_max_retry_after_ms = 3600 * 1000;
int			allma_max_input_bytes = 16 * 1024 * 1024;
int			allma_max_inflight_kb = 1024 * 1024;	/* 1 GB */

void
allma_define_limit_gucs(void)
{
	DefineCustomIntVariable("allma.template_max_iterations",
							"Sets the most block iterations one template rendering may do.",
							"Every {{#each}} element (and every element of an iterated section) counts; "
							"a rendering that needs more fails with SQLSTATE 54000.",
							&allma_template_max_iterations,
							1000000, 1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.template_max_output",
							"Sets the largest text one template rendering may produce.",
							"A rendering whose output grows larger fails with SQLSTATE 54000.",
							&allma_template_max_output,
							16 * 1024 * 1024, 1024, MaxAllocSize / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_input_size",
							"Sets the largest input allma_start_flow accepts.",
							"A larger input is refused with SQLSTATE 54000; no execution is created.",
							&allma_max_input_bytes,
							16 * 1024 * 1024, 1024, MaxAllocSize,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("allma.allow_drop_with_running",
							 "Lets DROP EXTENSION allma drop running executions.",
							 "Off: DROP EXTENSION allma fails while executions are running.",
							 &allma_allow_drop_with_running,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_inflight_bytes",
							"Sets how many bytes of HTTP responses one worker holds at once.",
							"Response buffers of running requests, and the responses recorded in "
							"one pass, each stay within it: a request whose buffer would pass it "
							"waits for room.  0 turns the limit off.",
							&allma_max_inflight_kb,
							1024 * 1024, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_retry_after",
							"Sets the longest wait a server's Retry-After header can impose on a retry.",
							"A longer Retry-After (or retryAfterMs in an error's details) is cut to this.",
							&allma_max_retry_after_ms,
							3600 * 1000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
