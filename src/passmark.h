/*-------------------------------------------------------------------------
 *
 * passmark.h
 *	  Engine faults: a worker's pass mark, the paths of its pass in progress
 *	  kept on disk, so that a worker that dies mid-pass is blamed on them.
 *
 * IDENTIFICATION
 *	  src/passmark.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PASSMARK_H
#define ALLMA_PASSMARK_H

#include "nodes/pg_list.h"
#include "utils/uuid.h"

typedef struct AllmaPassMarkEntry
{
	pg_uuid_t	execution_id;
	int64		path_id;
	int32		seq;			/* the path's history position when claimed */
	int32		pad;
} AllmaPassMarkEntry;

/* allma.max_path_crashes */
extern int	allma_max_path_crashes;

extern void allma_passmark_define_gucs(void);
extern int	allma_passmark_open(int slot, AllmaPassMarkEntry **left);
extern void allma_passmark_set(List *paths);
extern void allma_passmark_clear(void);
extern void allma_passmark_terminating(void);
extern void allma_passmark_reset(void);
extern void allma_passmark_record_crash(const AllmaPassMarkEntry *entry, bool solo);

#endif							/* ALLMA_PASSMARK_H */
