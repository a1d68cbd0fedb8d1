/*-------------------------------------------------------------------------
 *
 * spicache.c
 *	  Saved SPI plans for allma's fixed statements, keyed by their text.
 *
 * The SQL API functions (allma_start_flow and the lifecycle functions,
 * run once per call, often thousands of times in one transaction) used to
 * hand every statement to SPI_execute_with_args, which parses, analyzes and
 * plans it again on each call.  allma_spi_execute prepares a statement once
 * per backend (SPI_prepare + SPI_keepplan) and runs the saved plan after
 * that; the plan cache re-plans it by itself when a table it reads changes
 * (ALTER EXTENSION, DROP and CREATE EXTENSION).
 *
 * The key is the statement's text with its argument types.  Only allma's
 * own statements come here (no text that a caller wrote), and their number
 * is small and fixed; past ALLMA_SPI_CACHE_MAX distinct texts a statement
 * runs unsaved, so a caller that built texts without bound could not grow
 * the cache.  Two texts with the same 64-bit hash: the second one runs
 * unsaved too (its text is compared, never trusted to the hash).
 *
 * allma_spi_execute_keyed runs a saved plan of a key lookup with the plan
 * shapes that scan a table or a whole index disabled (see below).
 *
 * IDENTIFICATION
 *	  src/spicache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "spicache.h"

/* at most this many distinct statements are kept per backend */
#define ALLMA_SPI_CACHE_MAX 256

typedef struct SpiCacheEntry
{
	uint64		key;			/* hash of the text and the argument types */
	char	   *sql;			/* in TopMemoryContext */
	int			nargs;
	Oid		   *types;			/* in TopMemoryContext */
	SPIPlanPtr	plan;			/* saved; NULL while being prepared */
} SpiCacheEntry;

static HTAB *spi_cache = NULL;

static uint64
statement_key(const char *sql, int nargs, const Oid *types)
{
	uint64		h = hash_bytes_extended((const unsigned char *) sql, strlen(sql), 0);

	if (nargs > 0)
		h = hash_combine64(h, hash_bytes_extended((const unsigned char *) types,
												  sizeof(Oid) * nargs, 0));
	return h;
}

static bool
same_statement(SpiCacheEntry *e, const char *sql, int nargs, const Oid *types)
{
	return e->nargs == nargs && strcmp(e->sql, sql) == 0 &&
		(nargs == 0 || memcmp(e->types, types, sizeof(Oid) * nargs) == 0);
}

/*
 * cached_plan returns the saved plan of the statement, preparing and saving
 * it on first use, or NULL when it is not to be saved (cache full, hash
 * taken by another text).  SPI must be connected.
 */
static SPIPlanPtr
cached_plan(const char *sql, int nargs, Oid *types)
{
	uint64		key = statement_key(sql, nargs, types);
	SpiCacheEntry *e;
	bool		found;
	MemoryContext cxt;
	SPIPlanPtr	plan;

	if (spi_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(SpiCacheEntry);
		ctl.hcxt = TopMemoryContext;
		spi_cache = hash_create("allma statement plans", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(spi_cache, &key, HASH_FIND, NULL);
	if (e != NULL)
		return (e->plan != NULL && same_statement(e, sql, nargs, types)) ? e->plan : NULL;
	if (hash_get_num_entries(spi_cache) >= ALLMA_SPI_CACHE_MAX)
		return NULL;

	/* prepare first: a statement that does not prepare leaves no entry */
	cxt = CurrentMemoryContext;
	plan = SPI_prepare(sql, nargs, types);
	MemoryContextSwitchTo(cxt);
	if (plan == NULL)
		elog(ERROR, "allma: could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "allma: could not save the plan of \"%s\"", sql);

	e = hash_search(spi_cache, &key, HASH_ENTER, &found);
	e->sql = MemoryContextStrdup(TopMemoryContext, sql);
	e->nargs = nargs;
	e->types = NULL;
	if (nargs > 0)
	{
		e->types = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * nargs);
		memcpy(e->types, types, sizeof(Oid) * nargs);
	}
	e->plan = plan;
	return plan;
}

int
allma_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
				  const char *nulls, bool read_only, long tcount)
{
	SPIPlanPtr	plan = cached_plan(sql, nargs, types);

	if (plan == NULL)
		return SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, tcount);
	return SPI_execute_plan(plan, values, nulls, read_only, tcount);
}

void
allma_spi_cache_reset(void)
{
	HASH_SEQ_STATUS seq;
	SpiCacheEntry *e;

	if (spi_cache == NULL)
		return;
	hash_seq_init(&seq, spi_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->plan != NULL)
			SPI_freeplan(e->plan);
		pfree(e->sql);
		if (e->types != NULL)
			pfree(e->types);
	}
	hash_destroy(spi_cache);
	spi_cache = NULL;
}

/*
 * allma_spi_execute_keyed runs a saved plan whose every row is found by a
 * key (allma_resume_flow's statements, a wait's payload): whatever plan it
 * gets, it must look its rows up by index.  A generic plan is made once and
 * kept until the tables' statistics change; made while a table was empty
 * or believed empty (right after a cleanup, or after an ANALYZE that ran
 * while the rows' inserting transaction was still open), it would be a
 * sequential scan, and every later call would read the whole table.  So it
 * runs, and is (re)planned, with sequential scans, bitmap scans, hash and
 * merge joins disabled (store.c does the same for the workers' batches);
 * the planner still uses them where nothing else is possible.  The plans
 * of foreign-key checks (PostgreSQL's own, kept per backend) that a
 * statement fires are made in the same scope.  allma_spi_keyed_begin and
 * allma_spi_keyed_end open and close that scope around other statements
 * (nested in the order of the other GUC nest levels; an error unwinds it).
 */
int
allma_spi_keyed_begin(void)
{
	static const char *const off[] = {"enable_seqscan", "enable_bitmapscan",
	"enable_hashjoin", "enable_mergejoin"};
	int			nestlevel = NewGUCNestLevel();

	for (int i = 0; i < lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * allma_spi_ordered_begin: the keyed scope, and sorts off as well, for a
 * statement that takes the first rows of an index in its order (ORDER BY
 * ... LIMIT).  On statistics that say the table is (nearly) empty, another
 * index read whole with a filter and a sort looks as cheap as the ordered
 * one, and every call would then read the whole table; with sorts off the
 * index that gives the order wins.  Closed by allma_spi_keyed_end.
 */
int
allma_spi_ordered_begin(void)
{
	int			nestlevel = allma_spi_keyed_begin();

	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

void
allma_spi_keyed_end(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

int
allma_spi_execute_keyed(SPIPlanPtr plan, Datum *values, const char *nulls,
						bool read_only, long tcount)
{
	int			nestlevel = allma_spi_keyed_begin();
	int			rc;

	rc = SPI_execute_plan(plan, values, nulls, read_only, tcount);
	allma_spi_keyed_end(nestlevel);
	return rc;
}
