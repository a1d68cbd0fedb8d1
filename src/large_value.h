/*-------------------------------------------------------------------------
 *
 * large_value.h
 *	  Values out of line: big step outputs, context values and fork
 *	  aggregates stored once in allma.large_values and referenced by a
 *	  pointer {"$allma_ref": "<uuid>", "bytes": n} (see large_value.c).
 *
 * IDENTIFICATION
 *	  src/large_value.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LARGE_VALUE_H
#define ALLMA_LARGE_VALUE_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/uuid.h"

/* the key of a pointer object */
#define ALLMA_REF_KEY "$allma_ref"

/* elements per part of an array stored in parts (a fork's COLLECT_ARRAY) */
#define ALLMA_LARGE_PART_ELEMENTS 10000

/* allma.out_of_line_threshold, in bytes; 0 disables */
extern int	allma_out_of_line_threshold;

/*
 * The scope of pointer lookups in a worker: the root execution of the path
 * being run and the execution itself.  Outside a scope (NULL) paths do not
 * walk through pointers (the authoring helpers read no table), and
 * allma_value / allma_hydrate look up through the caller's row security.
 */
extern void allma_large_scope_set(const pg_uuid_t *root, const pg_uuid_t *execution);
extern void allma_large_scope_clear(void);
extern bool allma_large_scope_active(void);

/* true when c is a pointer object; *id gets its value id */
extern bool allma_large_is_ref(JsonbContainer *c, pg_uuid_t *id);
/* cheap test: may doc hold a pointer anywhere? */
extern bool allma_large_may_hold_ref(Jsonb *doc);

/* stores value (in scope) and returns its pointer */
extern Jsonb *allma_large_store(Jsonb *value);
/* the pointer of a stored value */
extern Jsonb *allma_large_make_ref(const pg_uuid_t *id, int64 bytes, int64 elements);

/* the whole value id refers to, hydrated; throws when there is none */
extern Jsonb *allma_large_fetch(const pg_uuid_t *id);
/*
 * element idx of the array id refers to, without reading the other parts;
 * NULL when out of range or the value is not an array.  *length (may be
 * NULL) gets the array's length (-1 when not an array).
 */
extern Jsonb *allma_large_element(const pg_uuid_t *id, int64 idx, int64 *length);

/*
 * part "part" of the value id refers to (the whole value is part 0 when it
 * is not stored in parts); NULL past the last.  *first gets the index of
 * its first element when the value is an array stored in parts, else -1.
 */
extern Jsonb *allma_large_part(const pg_uuid_t *id, int32 part, int64 *first);

/* doc with every pointer replaced by its value, at any depth */
extern Jsonb *allma_large_hydrate(Jsonb *doc);
/* the same, for a value of execution_id's tree, read as allma (redrive) */
extern Jsonb *allma_large_hydrate_in(const pg_uuid_t *execution_id, Jsonb *doc);

/*
 * the step output to keep: the pointer of output when it is above the
 * threshold (in scope), else output
 */
extern Jsonb *allma_large_offload(Jsonb *value);
/* ctx with its top-level values (and steps_output's) above the threshold offloaded */
extern Jsonb *allma_large_offload_context(Jsonb *ctx);
/* the same for an execution being started (scope: its root and itself) */
extern Jsonb *allma_large_offload_context_in(const pg_uuid_t *root, const pg_uuid_t *execution,
											 Jsonb *ctx);

#endif							/* ALLMA_LARGE_VALUE_H */
