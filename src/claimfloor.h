/*-------------------------------------------------------------------------
 *
 * claimfloor.h
 *	  Where a worker's claim starts reading the claim index (claimfloor.c).
 *
 * IDENTIFICATION
 *	  src/claimfloor.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_CLAIMFLOOR_H
#define ALLMA_CLAIMFLOOR_H

#include "allma.h"

#include "datatype/timestamp.h"

/* allma.claim_rescan_interval, in milliseconds (0: every claim is full) */
extern int	allma_claim_rescan_ms;

extern TimestampTz allma_claim_floor_begin(TimestampTz now, bool *full);
extern void allma_claim_floor_end(TimestampTz now, bool full, int nclaimed,
								  TimestampTz first_key, int32 max_priority);
extern TimestampTz allma_claim_floor_due(void);

#endif							/* ALLMA_CLAIMFLOOR_H */
