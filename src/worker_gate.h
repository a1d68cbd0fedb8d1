/*-------------------------------------------------------------------------
 *
 * worker_gate.h
 *	  The workers' schema gate (worker_gate.c).
 *
 * IDENTIFICATION
 *	  src/worker_gate.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_WORKER_GATE_H
#define ALLMA_WORKER_GATE_H

#include "allma.h"
#include "shmem.h"

/* what the schema gate found at the start of a pass */
typedef enum AllmaSchemaGate
{
	ALLMA_GATE_OPEN,			/* installed at ALLMA_SCHEMA_VERSION: work */
	ALLMA_GATE_NO_EXTENSION,	/* not installed */
	ALLMA_GATE_NEEDS_UPDATE,	/* installed at an older version */
	ALLMA_GATE_VERSION_MISMATCH /* installed at a version this library does
								 * not know */
} AllmaSchemaGate;

/*
 * allma_worker_check_schema: the gate for a pass (needs a transaction);
 * calls reset_caches when the extension changed since the last pass
 */
extern AllmaSchemaGate allma_worker_check_schema(void (*reset_caches) (void));

/* allma_worker_gate_forget: the next check treats the extension as new */
extern void allma_worker_gate_forget(void);

/* the worker state that shows a closed gate */
extern AllmaWorkerState allma_worker_gate_state(AllmaSchemaGate gate);

#endif							/* ALLMA_WORKER_GATE_H */
