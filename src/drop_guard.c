/*-------------------------------------------------------------------------
 *
 * drop_guard.c
 *	  DROP EXTENSION allma is refused while executions are running.
 *
 * Dropping the extension deletes every flow, execution, step history,
 * stored file, secret, prompt and binding of the database, and the workers
 * of executions in flight would then fail on tables that are gone.  So the
 * utility hook (allma.c) asks here first: when the statement drops the
 * extension allma, its owner runs it (others get PostgreSQL's "must be
 * owner" as before), allma.allow_drop_with_running is off, and executions
 * are RUNNING, it fails with SQLSTATE 55006 (object_in_use).  CASCADE does
 * not count as consent: it is typed out of habit.  The count is read as
 * the bootstrap superuser, so row security hides no execution from it.
 *
 * IDENTIFICATION
 *	  src/drop_guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"

#include "allma.h"
#include "drop_guard.h"
#include "owner.h"

bool		allma_allow_drop_with_running = false;

/* how many executions are RUNNING (0 when allma's table is not there) */
static int64
running_executions(void)
{
	Oid			nsp = get_namespace_oid("allma", true);
	AllmaAsOwner st;
	int64		n = 0;
	bool		isnull;

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("executions", nsp)))
		return 0;
	allma_owner_begin(&st);
	allma_owner_exec("SELECT count(*) FROM allma.executions WHERE status IN ('RUNNING', 'QUEUED')",
					 0, NULL, NULL, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	allma_owner_end(&st);
	return n;
}

void
allma_drop_guard_check(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;
	Oid			ext;
	int64		n;

	if (!IsA(parsetree, DropStmt))
		return;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION || allma_allow_drop_with_running)
		return;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), ALLMA_EXTENSION_NAME) == 0)
			break;
	}
	if (lc == NULL)
		return;
	ext = get_extension_oid(ALLMA_EXTENSION_NAME, true);
	if (!OidIsValid(ext) || !pg_extension_ownercheck(ext, GetUserId()))
		return;

	n = running_executions();
	if (n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot drop extension %s while %lld execution%s running",
						ALLMA_EXTENSION_NAME, (long long) n, n == 1 ? " is" : "s are"),
				 errdetail("Dropping the extension deletes every flow, execution, step history, "
						   "stored file, secret, prompt and binding of this database; running "
						   "executions would stop half-way, their requests possibly sent."),
				 errhint("Wait for the executions to end (or cancel them), or, as a superuser, "
						 "SET allma.allow_drop_with_running = on to drop them anyway.")));
}
