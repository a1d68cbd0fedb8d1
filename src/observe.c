/*-------------------------------------------------------------------------
 *
 * observe.c
 *	  allma.worker_slots(): what shared memory knows about each running
 *	  worker (slot, PID, database, state, steps run), for the SQL function
 *	  allma_worker_status() of 1.1, which adds the queue numbers it counts
 *	  in allma's tables as the caller (docs/observability.md).
 *
 * Nothing here reads a table: the slots are copied under shmem.c's lock
 * and returned as they were at that moment.
 *
 * IDENTIFICATION
 *	  src/observe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(allma_worker_slots);

/*
 * allma.worker_slots() returns setof (worker integer, pid integer,
 * database_oid oid, state text, steps_run bigint)
 */
Datum
allma_worker_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AllmaWorkerInfo workers[ALLMA_MAX_WORKERS];
	int			n;

	InitMaterializedSRF(fcinfo, 0);

	n = allma_shmem_list_workers(workers);
	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int32GetDatum(workers[i].slot);
		values[1] = Int32GetDatum(workers[i].pid);
		values[2] = ObjectIdGetDatum(workers[i].dboid);
		values[3] = CStringGetTextDatum(allma_worker_state_name(workers[i].state));
		values[4] = Int64GetDatum((int64) workers[i].steps_done);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
