/*-------------------------------------------------------------------------
 *
 * store_internal.h
 *	  What the batch-store files (store.c, store_forks.c) share and nobody
 *	  else uses: a column of values turned into an SQL array parameter, and
 *	  running a saved batch plan.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_STORE_INTERNAL_H
#define ALLMA_STORE_INTERNAL_H

#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/array.h"

#include "pathstate.h"

/* ----------------------------------------------------------------
 * A column of values, turned into an SQL array parameter.
 * ----------------------------------------------------------------
 */
typedef struct Column
{
	Oid			elemtype;
	int16		typlen;
	bool		byval;
	char		align;
	int			n;
	int			cap;
	Datum	   *values;
	bool	   *nulls;
} Column;

static inline void
col_init(Column *col, Oid elemtype, int cap)
{
	col->elemtype = elemtype;
	get_typlenbyvalalign(elemtype, &col->typlen, &col->byval, &col->align);
	col->n = 0;
	col->cap = Max(cap, 1);
	col->values = palloc(sizeof(Datum) * col->cap);
	col->nulls = palloc(sizeof(bool) * col->cap);
}

static inline void
col_add(Column *col, Datum value, bool isnull)
{
	if (col->n == col->cap)
	{
		col->cap *= 2;
		col->values = repalloc(col->values, sizeof(Datum) * col->cap);
		col->nulls = repalloc(col->nulls, sizeof(bool) * col->cap);
	}
	col->values[col->n] = isnull ? (Datum) 0 : value;
	col->nulls[col->n] = isnull;
	col->n++;
}

static inline void
col_add_text(Column *col, const char *s)
{
	col_add(col, s ? CStringGetTextDatum(s) : (Datum) 0, s == NULL);
}

static inline void
col_add_jsonb(Column *col, Jsonb *jb)
{
	col_add(col, jb ? JsonbPGetDatum(jb) : (Datum) 0, jb == NULL);
}

static inline Datum
col_array(Column *col)
{
	int			dims[1] = {col->n};
	int			lbs[1] = {1};

	return PointerGetDatum(construct_md_array(col->values, col->nulls, 1, dims, lbs,
											  col->elemtype, col->typlen,
											  col->byval, col->align));
}

/* store.c: runs a saved batch plan (keys as index conditions) and checks its result */
extern void allma_store_execute_plan(SPIPlanPtr plan, Datum *args, int expected);
#define execute_plan(plan, args, expected) allma_store_execute_plan(plan, args, expected)

/* store_forks.c: a batch's fork writes, and its plans */
extern void allma_store_save_new_forks(List *paths);
extern bool allma_store_save_branches(List *paths);
extern void allma_store_save_joined_forks(List *paths);
extern void allma_store_forks_reset(void);

#endif							/* ALLMA_STORE_INTERNAL_H */
