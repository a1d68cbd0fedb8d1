/*-------------------------------------------------------------------------
 *
 * step.h
 *	  The step-type table, and what every step handler shares: the record
 *	  of one step attempt (StepRun) and the helpers to read the context,
 *	  render templates, leave a request for the worker and raise Allma
 *	  errors.
 *
 * A step type is one row of the table in step.c.  The row says how the
 * step uses moduleIdentifier, which function checks its definition (called
 * by validate.c), how it starts and how it completes; flowcache.c resolves
 * a step's row once, when the flow is parsed, and the engine calls the
 * row's functions.  No other list of step types exists.
 *
 * Handlers run inside the step's subtransaction, in the step's memory
 * context (reset after the step): whatever they allocate in
 * CurrentMemoryContext is garbage after the step, except what they copy
 * into run->pathcxt (a fork spec, the request to send).
 *
 * IDENTIFICATION
 *	  src/step.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_STEP_H
#define ALLMA_STEP_H

#include "allma.h"

#include "flowcache.h"
#include "http.h"
#include "pathstate.h"
#include "secret_use.h"

struct AllmaChecker;			/* defcheck.h */

/* what one attempt of one step produced */
typedef struct StepRun
{
	AllmaPathState *ps;
	AllmaStep  *step;
	Jsonb	   *runtime;		/* built on first use */
	const char *default_error_name;
	MemoryContext pathcxt;		/* outlives the step: fork specs go here */
	bool		forked;			/* the step started a fork */
	bool		parked;			/* the step parked its path (ALLMA_STEP_PARKS) */
	bool		io;				/* the step's request is to be sent */
	int64		repoll_ms;		/* POLL_EXTERNAL_API: poll again after this */
	TimestampTz park_until;		/* a parked path is due then (a wait's
								 * deadline); 0: when woken */
	Jsonb	   *details;		/* extra history details of a completed step */

	/* results */
	Jsonb	   *input;
	Jsonb	   *output;
	Jsonb	   *context;
	Jsonb	   *counts;
	char	   *next_step;
	bool		end_flow;
	Jsonb	   *error;
	Jsonb	   *context_writes;	/* [[path, value], ...] a module writes into
								 * the context after the output mappings */

	/* rate limits (ratelimit.c): an LLM step's default key and token estimate */
	char	   *rl_key;
	int64		rl_tokens;
} StepRun;

/*
 * A handler: returns the step's output, or NULL when the step is not done
 * yet (it left a request for the worker, started a fork, or polls again).
 * Errors are thrown; the engine turns them into Allma error objects.
 */
typedef Jsonb *(*AllmaStepFunc) (StepRun *run);

/*
 * A definition check, called by validate.c after the fields every step
 * has: throws on the first problem of the step's own fields.
 */
typedef void (*AllmaStepCheckFunc) (struct AllmaChecker *ck, JsonbContainer *step);

/* how a step type uses "moduleIdentifier" */
typedef enum AllmaModuleRule
{
	ALLMA_MODULE_NONE,			/* none, or the type's own system identifier */
	ALLMA_MODULE_FIXED,			/* the same, for types Allma runs as a module */
	ALLMA_MODULE_REQUIRED,		/* names the module the step runs */
	ALLMA_MODULE_OPTIONAL		/* may name one (CUSTOM_LAMBDA_INVOKE) */
} AllmaModuleRule;

/* AllmaStepType.starts: how a step of the type may start */
#define ALLMA_STEP_RUNS		0x01	/* computes its output in the step's
									 * transaction */
#define ALLMA_STEP_SENDS	0x02	/* leaves a request the worker sends after
									 * commit; completes from the response */
#define ALLMA_STEP_FORKS	0x04	/* starts a fork; completes when its
									 * branches have finished */
#define ALLMA_STEP_PARKS	0x08	/* parks its path WAITING (no process, no
									 * lock) until it is woken: a sync
									 * sub-flow's child ended */

/* AllmaStepType.flags: what the state machine does differently */
#define ALLMA_STEP_ENDS_FLOW	0x01	/* the path ends after it: its output
										 * is not mapped, no transition runs */
#define ALLMA_STEP_POLLS		0x02	/* "complete" may return NULL without a
										 * request: the step runs again after
										 * run->repoll_ms */

/* AllmaStepType.builtin_modules and AllmaBuiltinModule.kind */
#define ALLMA_MODULES_TRANSFORM	0x01	/* DATA_TRANSFORMATION's system modules */
#define ALLMA_MODULES_DATA		0x02	/* DATA_LOAD and DATA_SAVE's (SQL) */

/* one row of the step-type table */
typedef struct AllmaStepType
{
	const char *name;			/* Allma's stepType */
	AllmaModuleRule module_rule;
	const char *own_module;		/* Allma's system identifier, or NULL */
	int			builtin_modules;	/* ALLMA_MODULES_* the step runs itself */
	AllmaStepCheckFunc check;	/* its own fields, or NULL */
	int			starts;			/* ALLMA_STEP_RUNS | SENDS | FORKS; 0: not
								 * run by this version */
	AllmaStepFunc start;		/* the first call of an attempt */
	AllmaStepFunc complete;		/* with the response (ps->response), at
								 * the join or when woken (ps->joining);
								 * NULL if never */
	int			flags;			/* ALLMA_STEP_ENDS_FLOW | POLLS */
} AllmaStepType;

/* the step-type table (step.c), and its row for a name (NULL: unknown) */
extern const AllmaStepType allma_step_types[];
extern const int allma_nstep_types;
extern const AllmaStepType *allma_step_type_find(const char *name);

/* the row of a stepType allma does not know: it fails when run */
extern const AllmaStepType allma_step_type_unknown;

/*
 * A built-in module: a moduleIdentifier that allma runs itself instead of
 * dispatching it to a binding (allma_bind_module).  The registry is in
 * steps/module.c; a module family (transforms, SQL) is one file with an
 * array of these, ended by a row with a NULL identifier.
 */
typedef struct AllmaBuiltinModule
{
	const char *identifier;		/* "system/..." */
	int			kind;			/* ALLMA_MODULES_*: the step types that run
								 * it say so in builtin_modules */
	bool		exclusive;		/* other step types may not name it */
	/* a pure function of the input (allma_run_module runs these too) */
	Jsonb	   *(*run) (const char *module, Jsonb *input);
	/* or: a module that needs the step (its context, its role) */
	Jsonb	   *(*run_in_step) (StepRun *run, Jsonb *input);
	/* checks the definition of a step that names it, or NULL */
	void		(*check) (struct AllmaChecker *ck, JsonbContainer *step,
						  const char *module);
} AllmaBuiltinModule;

/* the built-in module "identifier", or NULL */
extern const AllmaBuiltinModule *allma_module_find(const char *identifier);

/*
 * allma_module_run runs a built-in module that is a pure function of its
 * input (what allma_run_module does from SQL); throws for other modules
 */
extern Jsonb *allma_module_run(const char *module_identifier, Jsonb *input);

/*
 * the built-in module a step of "type" naming "module" runs, or NULL when
 * the step dispatches to a binding; resolved once per cached flow
 */
extern const AllmaBuiltinModule *allma_module_for_step(const AllmaStepType *type,
													   const char *module);

/* ----------------------------------------------------------------
 * Context and templates
 * ----------------------------------------------------------------
 */

/* a time as Allma writes it (ISO 8601, UTC, ms), or with microseconds */
extern char *allma_timestamp_iso(TimestampTz ts, bool micro);

/* allma_runtime_state: the runtime fields Allma exposes to paths and templates */
extern Jsonb *allma_runtime_state(AllmaPathState *ps);

/* the runtime state of the run's path, built once per step */
extern Jsonb *allma_step_runtime(StepRun *run);

/* value at an input-mapping path: the context first, then the runtime state */
extern Jsonb *allma_step_lookup(StepRun *run, const char *path);

/* the document templates see: {...context, ...runtimeState, ...stepInput} */
extern Jsonb *allma_step_template_context(StepRun *run);

/* module input: rendered customConfig with the step input merged over it */
extern Jsonb *allma_step_module_input(StepRun *run);

/*
 * allma_step_mapping_values: Allma's TemplateContextMappingItem objects
 * ({sourceJsonPath, formatAs RAW|JSON}) evaluated over ctx, as an object
 */
extern Jsonb *allma_step_mapping_values(Jsonb *mappings, Jsonb *ctx);

/* customConfig.timeoutMs (rendered), else allma.http_timeout */
extern int64 allma_step_timeout_ms(StepRun *run);

/* ----------------------------------------------------------------
 * The request a step leaves for the worker
 * ----------------------------------------------------------------
 */

/* the key of one attempt of one step: Idempotency-Key, JSON-RPC id, ... */
extern char *allma_step_idempotency_key(AllmaPathState *ps, AllmaStep *step);
extern char *allma_step_request_key(AllmaPathState *ps, AllmaStep *step,
									 const char *request);

/* who uses a secret in this step (the starter, the flow version), sent to url */
extern AllmaSecretUse allma_step_secret_use(StepRun *run, const char *url);

/*
 * allma_step_set_io_request stores req as the path's request to send, and
 * the headers with secrets resolved, when there are any, as the ones
 * really sent.  headers may contain secret markers; req gets them
 * redacted.  Sets run->io.
 */
extern void allma_step_set_io_request(StepRun *run, Jsonb *req, Jsonb *headers);

/*
 * allma_step_check_io_request: the request a step is about to leave for
 * the worker must be one the HTTP client accepts; if not, the step fails
 * now, in its transaction, instead of the worker failing to send it.
 */
extern void allma_step_check_io_request(StepRun *run);

/* ----------------------------------------------------------------
 * Errors and responses
 * ----------------------------------------------------------------
 */

/* an Allma error with details, through the DETAIL JSON convention (errors.c) */
extern void allma_step_raise_error(const char *name, const char *message,
								   Jsonb *details) pg_attribute_noreturn();

/* a ConfigurationError */
extern void allma_step_raise_config_error(const char *message) pg_attribute_noreturn();

/*
 * allma_step_raise_for_transfer throws the Allma error of a failed
 * transfer or an unacceptable status (see step.c); returns the details
 * object (status, url) when the response is usable.
 */
extern Jsonb *allma_step_raise_for_transfer(AllmaHttpCompletion *c, int bad_status,
											const char *what);

/* s parsed as JSON, or NULL when it is not JSON */
extern Jsonb *allma_step_parse_json(const char *s);
extern int	allma_step_error_sqlstate(const char *name);
extern char *allma_step_response_text(AllmaHttpCompletion *c, size_t *len);
extern Jsonb *allma_step_response_data(AllmaHttpCompletion *c);

/* ----------------------------------------------------------------
 * User code and memory
 * ----------------------------------------------------------------
 */

/*
 * allma_step_enter_user_code switches to the execution's starter role for
 * user code (SQL steps, bound functions) and arms the step's SQL timeout;
 * allma_step_leave_user_code disarms it, switches back and undoes GUC
 * changes.  On error the subtransaction abort restores all three.
 */
typedef struct AllmaUserCodeState
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
} AllmaUserCodeState;

extern void allma_step_enter_user_code(StepRun *run, AllmaUserCodeState *st);
extern void allma_step_leave_user_code(AllmaUserCodeState *st);

/* a copy of jb in CurrentMemoryContext (NULL stays NULL) */
extern Jsonb *allma_step_copy_jsonb(Jsonb *jb);

#endif							/* ALLMA_STEP_H */
