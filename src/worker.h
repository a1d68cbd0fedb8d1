/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The allma worker loop.
 *
 * IDENTIFICATION
 *	  src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_WORKER_H
#define ALLMA_WORKER_H

#include "allma.h"

#endif							/* ALLMA_WORKER_H */
