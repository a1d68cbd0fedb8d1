/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Running allma's own SQL as the bootstrap superuser (see owner.h):
 *	  the SQL API functions and the engine read and write allma's tables
 *	  on behalf of callers who have no privileges on them.
 *
 * IDENTIFICATION
 *	  src/owner.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "miscadmin.h"

#include "owner.h"
#include "spicache.h"

void
allma_owner_begin(AllmaAsOwner *st)
{
	GetUserIdAndSecContext(&st->save_userid, &st->save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   st->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
}

void
allma_owner_end(AllmaAsOwner *st)
{
	SPI_finish();
	SetUserIdAndSecContext(st->save_userid, st->save_sec);
}

void
allma_owner_exec(const char *sql, int nargs, Oid *types, Datum *values,
				 const char *nulls, int expected)
{
	int			rc = allma_spi_execute(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "allma: query failed (%s): %s", SPI_result_code_string(rc), sql);
}
