/*-------------------------------------------------------------------------
 *
 * sqlstep.h
 *	  Steps that run SQL: system/sql-query, system/sql-execute, and module
 *	  bindings (CUSTOM_LOGIC, CUSTOM_LAMBDA_INVOKE and unknown modules
 *	  dispatched to a user's SQL function).
 *
 * The engine calls these inside a subtransaction, already switched to the
 * role that started the execution, with SPI not connected by the caller
 * for this level (each function connects and finishes SPI itself).
 *
 * IDENTIFICATION
 *	  src/sqlstep.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_SQLSTEP_H
#define ALLMA_SQLSTEP_H

#include "allma.h"

#define ALLMA_MODULE_SQL_QUERY		"system/sql-query"
#define ALLMA_MODULE_SQL_EXECUTE	"system/sql-execute"

/*
 * allma_sqlstep_run runs "config->sql" with "config->parameters" (strings
 * starting with "$" are JSONPaths into ctx, other values are literals).
 * returns_rows: output {rows, rowCount}; else {rowCount}.
 */
extern Jsonb *allma_sqlstep_run(Jsonb *config, Jsonb *ctx, bool returns_rows);

/*
 * allma_binding_lookup finds the binding of a module identifier or Lambda
 * ARN (exact match first, then the longest LIKE pattern): the handler
 * function, or InvalidOid with *url (and *headers) set for an HTTP
 * binding (allma_bind_module_http).  InvalidOid and *url NULL when none.
 * *pattern: the binding's pattern (whose USAGE grants count), NULL when none.
 */
extern Oid	allma_binding_lookup(const char *key, char **url, Jsonb **headers, char **pattern);

/* allma_binding_invoke calls handler(jsonb) and returns its jsonb result */
extern Jsonb *allma_binding_invoke(Oid handler, Jsonb *input);

/*
 * The statement timeout of a step's user code.  allma_sql_timeout_begin
 * arms PostgreSQL's STATEMENT_TIMEOUT for the smaller of the step's
 * customConfig.timeoutMs and allma.sql_step_timeout (neither: no timer);
 * allma_sql_timeout_end disarms it.  Call them right around the calls of
 * allma_sqlstep_run / allma_binding_invoke, inside the step's
 * subtransaction: those turn the cancel into an error naming the step and
 * the timeout, and an error or an abort disarms the timer by itself.
 */
extern void allma_sql_timeout_begin(const char *step_id, Jsonb *custom_config);
extern void allma_sql_timeout_end(void);

#endif							/* ALLMA_SQLSTEP_H */
