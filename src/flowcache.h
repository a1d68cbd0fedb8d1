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

typedef enum AllmaStepType
{
	ALLMA_STEP_NO_OP,
	ALLMA_STEP_END_FLOW,
	ALLMA_STEP_CUSTOM_LOGIC,
	ALLMA_STEP_CUSTOM_LAMBDA_INVOKE,
	ALLMA_STEP_DATA_LOAD,
	ALLMA_STEP_DATA_SAVE,
	ALLMA_STEP_DATA_TRANSFORMATION,
	ALLMA_STEP_EMAIL_START_POINT,
	ALLMA_STEP_SCHEDULE_START_POINT,
	ALLMA_STEP_PARALLEL_FORK_MANAGER,
	ALLMA_STEP_MCP_CALL,
	ALLMA_STEP_FILE_DOWNLOAD,
	ALLMA_STEP_API_CALL,
	ALLMA_STEP_LLM_INVOCATION,
	ALLMA_STEP_POLL_EXTERNAL_API,
	ALLMA_STEP_EMAIL,
	ALLMA_STEP_OTHER			/* known to Allma, not run by this version */
} AllmaStepType;

typedef struct AllmaTransition
{
	char	   *condition;
	char	   *next_step;
	int			max_transitions;	/* 0 = unlimited */
} AllmaTransition;

typedef struct AllmaStep
{
	char	   *id;
	char	   *type_name;
	AllmaStepType type;
	Jsonb	   *def;			/* the whole step object */
	char	   *module;			/* moduleIdentifier, or NULL */
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
} AllmaFlow;

extern AllmaFlow *allma_flow_get(const char *flow_id, int32 version);
extern AllmaStep *allma_flow_step(AllmaFlow *flow, const char *step_id);
extern int64 allma_step_delay_ms(AllmaStep *step, bool before);
extern void allma_flowcache_reset(void);

#endif							/* ALLMA_FLOWCACHE_H */
