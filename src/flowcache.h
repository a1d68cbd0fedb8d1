/*-------------------------------------------------------------------------
 *
 * flowcache.h
 *	  Parsed flow definitions, cached per process.
 *
 * IDENTIFICATION
 *	  src/flowcache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_FLOWCACHE_H
#define ALLMA_FLOWCACHE_H

#include "allma.h"

struct AllmaStepType;			/* step.h */
struct AllmaBuiltinModule;	/* step.h */

typedef struct AllmaTransition
{
	char	   *condition;
	char	   *next_step;
	int			max_transitions;	/* 0 = unlimited */
} AllmaTransition;

typedef struct AllmaStep
{
	char	   *id;
	char	   *type_name;		/* stepType as written */
	const struct AllmaStepType *type;	/* its row in step.c's table */
	Jsonb	   *def;			/* the whole step object */
	char	   *module;			/* moduleIdentifier, or NULL */
	const struct AllmaBuiltinModule *builtin;	/* the built-in module it runs,
												 * or NULL (a binding) */
	Jsonb	   *input_mappings; /* object or NULL */
	Jsonb	   *output_mappings;	/* object, or NULL for the default */
	Jsonb	   *literals;		/* object or NULL */
	Jsonb	   *custom_config;	/* object or NULL */
	Jsonb	   *on_error;		/* object or NULL */
	Jsonb	   *required_fields;	/* outputValidation.requiredFields, or NULL */
	int			ntransitions;
	AllmaTransition *transitions;
	char	   *default_next;
	int			default_max_transitions;
	/* step delay: uniformly random in [from, to] ms, before or after */
	bool		has_delay;
	bool		delay_before;
	int64		delay_from_ms;
	int64		delay_to_ms;
} AllmaStep;

typedef struct AllmaFlow
{
	char	   *flow_id;
	int32		version;
	Jsonb	   *definition;
	char	   *start_step;
	Jsonb	   *flow_variables; /* object, never NULL */
	int			enable_logs;	/* -1 unset, 0 or 1 */
	int			nsteps;
	AllmaStep  *steps;
	Jsonb	   *completion_actions;	/* onCompletionActions (an array), or NULL;
									 * its webhooks are steps too (see
									 * steps/completion.c) */
} AllmaFlow;

extern AllmaFlow *allma_flow_get(const char *flow_id, int32 version);
extern AllmaStep *allma_flow_step(AllmaFlow *flow, const char *step_id);
extern int64 allma_step_delay_ms(AllmaStep *step, bool before);
extern void allma_flowcache_reset(void);

#endif							/* ALLMA_FLOWCACHE_H */
