/*-------------------------------------------------------------------------
 *
 * spicache.h
 *	  Saved SPI plans for allma's fixed statements (see spicache.c).
 *
 * IDENTIFICATION
 *	  src/spicache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_SPICACHE_H
#define ALLMA_SPICACHE_H

#include "postgres.h"

/*
 * allma_spi_execute is SPI_execute_with_args for a statement allma itself
 * wrote (never caller text): planned once per backend, then run from the
 * saved plan.  SPI must be connected; returns SPI's result code.
 */
extern int	allma_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
							  const char *nulls, bool read_only, long tcount);

/*
 * Keyed planning: allma_keyed_planning_begin disables the plan shapes that
 * only pay off on statistics (sequential and bitmap scans, hash and merge
 * joins) until allma_keyed_planning_end(level); an error in between is
 * undone by the (sub)transaction abort.  For allma's own statements that
 * look rows up by key or read an index in order, whose plans (and the
 * foreign-key checks they fire) must not follow statistics taken while a
 * table was empty (see store.c, execute_keyed).
 */
extern int	allma_keyed_planning_begin(void);
extern void allma_keyed_planning_end(int level);

/* allma_spi_cache_reset frees every saved statement plan */
extern void allma_spi_cache_reset(void);

#endif							/* ALLMA_SPICACHE_H */
