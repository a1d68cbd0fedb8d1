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

#include "executor/spi.h"

/*
 * allma_spi_execute is SPI_execute_with_args for a statement allma itself
 * wrote (never caller text): planned once per backend, then run from the
 * saved plan.  SPI must be connected; returns SPI's result code.
 */
extern int	allma_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
							  const char *nulls, bool read_only, long tcount);

/*
 * allma_spi_execute_keyed is SPI_execute_plan for a saved plan that looks
 * its rows up by key: run and planned with table-scanning plan shapes
 * disabled, so that a plan made on empty statistics cannot scan.
 */
extern int	allma_spi_execute_keyed(SPIPlanPtr plan, Datum *values, const char *nulls,
									bool read_only, long tcount);

/* the same scope around other statements: begin returns what end takes */
extern int	allma_spi_keyed_begin(void);
extern int	allma_spi_ordered_begin(void);
extern void allma_spi_keyed_end(int nestlevel);

/* allma_spi_cache_reset frees every saved statement plan */
extern void allma_spi_cache_reset(void);

#endif							/* ALLMA_SPICACHE_H */
