/* PLACEHOLDER */
#include "postgres.h"
#include "fmgr.h"
PG_FUNCTION_INFO_V1(allma_create_flow);
PG_FUNCTION_INFO_V1(allma_publish_flow);
PG_FUNCTION_INFO_V1(allma_start_flow);
PG_FUNCTION_INFO_V1(allma_wait);
PG_FUNCTION_INFO_V1(allma_worker_status);
Datum allma_create_flow(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
Datum allma_publish_flow(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
Datum allma_start_flow(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
Datum allma_wait(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
Datum allma_worker_status(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
