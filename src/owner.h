/*-------------------------------------------------------------------------
 *
 * owner.h
 *	  Running allma's own SQL (on its catalog tables: flows, prompts,
 *	  secrets) as the bootstrap superuser, whoever the calling role is.
 *
 * Usage:
 *
 *	  AllmaAsOwner st;
 *
 *	  allma_owner_begin(&st);		-- switch user, SPI_connect
 *	  allma_owner_exec(sql, ...);	-- any number
 *	  allma_owner_end(&st);			-- SPI_finish, switch back
 *
 * An error in between is cleaned up by the (sub)transaction abort, which
 * restores the user and the SPI connection.
 *
 * IDENTIFICATION
 *	  src/owner.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_OWNER_H
#define ALLMA_OWNER_H

#include "postgres.h"

typedef struct AllmaAsOwner
{
	Oid			save_userid;
	int			save_sec;
} AllmaAsOwner;

extern void allma_owner_begin(AllmaAsOwner *st);
extern void allma_owner_end(AllmaAsOwner *st);

/*
 * allma_owner_exec runs sql with arguments (nulls as for SPI, may be NULL)
 * and throws unless SPI returns "expected".
 */
extern void allma_owner_exec(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, int expected);

#endif							/* ALLMA_OWNER_H */
