/*-------------------------------------------------------------------------
 *
 * graph.c
 *	  Graphs of flows and executions as Mermaid ("flowchart TD") or
 *	  Graphviz DOT text: allma_flow_graph and allma_execution_graph.
 *
 * The graph is built from the stored flow definition (the jsonb of
 * allma.flow_versions.definition), not from the engine's parsed flows, so
 * it shows exactly what was stored:
 *
 *	- a "start" marker with an edge to the start step, and an "end" marker
 *	  that END_FLOW steps and every other place where a path ends lead to;
 *	- one node per step, labelled with its id, its stepType and its
 *	  moduleIdentifier; forks, waits, polls, sub-flow calls, trigger start
 *	  points and END_FLOW have their own shapes and say what they wait for,
 *	  iterate over or start;
 *	- transitions labelled with their conditions (numbered when there are
 *	  several: the first true one wins), the default edge ("default" when
 *	  the step also has transitions, "after the branches" from a fork), a
 *	  dotted "no match" edge to the end where a step has transitions but no
 *	  default, dashed fallback (onError.fallbackStepInstanceId) and catch
 *	  (onError.catch[]) edges, and bold edges from each fork to its
 *	  branches' first steps, labelled with the branch id and its condition.
 *
 * Node names in the output are generated (s0 start, s1..sN steps in
 * breadth-first order from the start step, e0 end, m1.. steps that are
 * referenced but missing), never taken from the definition.  Every text
 * from the definition appears only inside quoted labels, escaped for the
 * format (append_mermaid_text, append_dot_text), so no step id or condition
 * can end a label or inject syntax; long texts are clipped.
 *
 * allma_execution_graph draws the graph of the version an execution ran
 * and overlays its history (allma.step_executions, read as the caller, so
 * that row-level security applies): steps that ran, with their total time,
 * how often they ran, their attempts and polls; the failed step with its
 * error name, and the errors caught by catch rules or a fallback; steps
 * running or waiting now; the edges taken (a record's next_step_instance_id,
 * with details.caughtBy telling catch and fallback edges apart), with
 * counts; and for each fork branch a count of branches done, failed,
 * running and waiting instead of one node per branch.
 *
 * IDENTIFICATION
 *	  src/graph.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "jsonb_util.h"
#include "picture.h"

PG_FUNCTION_INFO_V1(allma_flow_graph);
PG_FUNCTION_INFO_V1(allma_execution_graph);

/* how much of a text from the definition a label shows */
#define ID_CHARS		60
#define CONDITION_CHARS	80
#define NOTE_CHARS		60

/* how many live paths an execution graph looks at */
#define MAX_LIVE_PATHS	10000

typedef enum GraphFormat
{
	FORMAT_MERMAID,
	FORMAT_DOT
} GraphFormat;

typedef enum NodeShape
{
	SHAPE_STEP,
	SHAPE_END_FLOW,
	SHAPE_FORK,
	SHAPE_WAIT,
	SHAPE_POLL,
	SHAPE_SUBFLOW,
	SHAPE_TRIGGER,
	SHAPE_START,
	SHAPE_END,
	SHAPE_MISSING
} NodeShape;

/* how each shape is written: Mermaid's brackets around the quoted label, DOT's attributes */
typedef struct ShapeStyle
{
	const char *mermaid_open;
	const char *mermaid_close;
	const char *dot;
} ShapeStyle;

static const ShapeStyle shape_styles[] = {
	[SHAPE_STEP] = {"(\"", "\")", ""},
	[SHAPE_END_FLOW] = {"([\"", "\"])", ", shape=octagon, style=filled"},
	[SHAPE_FORK] = {"{{\"", "\"}}", ", shape=hexagon, style=filled"},
	[SHAPE_WAIT] = {"[/\"", "\"/]", ", shape=parallelogram, style=filled"},
	[SHAPE_POLL] = {"[\\\"", "\"\\]", ", shape=trapezium, style=filled"},
	[SHAPE_SUBFLOW] = {"[[\"", "\"]]", ", shape=box, style=filled, peripheries=2"},
	[SHAPE_TRIGGER] = {">\"", "\"]", ", shape=cds, style=filled"},
	[SHAPE_START] = {"((\"", "\"))",
	", shape=circle, style=filled, fillcolor=\"#37474f\", color=\"#37474f\", fontcolor=\"#ffffff\""},
	[SHAPE_END] = {"((\"", "\"))",
	", shape=doublecircle, style=filled, fillcolor=\"#37474f\", color=\"#37474f\", fontcolor=\"#ffffff\""},
	[SHAPE_MISSING] = {"[\"", "\"]", ", style=dashed, color=\"#c62828\", fontcolor=\"#c62828\""},
};

typedef enum NodeState
{
	STATE_PLAIN,				/* a flow graph: no execution */
	STATE_NOT_RUN,
	STATE_RAN,
	STATE_FAILED,
	STATE_RUNNING
} NodeState;

typedef enum EdgeKind
{
	EDGE_START,
	EDGE_TRANSITION,
	EDGE_DEFAULT,
	EDGE_NO_MATCH,
	EDGE_FALLBACK,
	EDGE_CATCH,
	EDGE_BRANCH,
	EDGE_END
} EdgeKind;

typedef struct GraphNode
{
	char		name[16];		/* generated: s0, s1, e0, m1 */
	char	   *step_id;		/* NULL for the markers */
	Jsonb	   *step;			/* the step's definition, or NULL */
	NodeShape	shape;
	List	   *lines;			/* label lines, plain text */
	NodeState	state;
	/* execution overlay */
	int64		runs;			/* final attempts (COMPLETED or FAILED) */
	int64		attempts;		/* all attempts but polls */
	int64		polls;
	int64		failures;		/* failed without being caught */
	int64		usecs;			/* sum of the attempts' durations */
	char	   *error_name;
	int64		caught;			/* failed, then caught or sent to the fallback */
	char	   *caught_name;
	int			running;		/* live paths running this step now */
	int			waiting;		/* live paths waiting at this step */
} GraphNode;

typedef struct GraphEdge
{
	int			from;
	int			to;
	EdgeKind	kind;
	char	   *label;			/* plain text, or NULL */
	char	   *branch_id;		/* EDGE_BRANCH: the branch */
	int64		taken;			/* execution overlay */
	char	   *summary;		/* EDGE_BRANCH: counts of its branches */
} GraphEdge;

typedef struct StepIndexEntry
{
	const char *id;
	int			node;
} StepIndexEntry;

typedef struct FlowGraph
{
	char	   *flow_id;
	int			version;
	GraphNode  *nodes;
	int			nnodes;
	int			cap_nodes;
	GraphEdge  *edges;
	int			nedges;
	int			cap_edges;
	StepIndexEntry *index;		/* the steps, sorted by id */
	int			nindex;
	int			nmissing;
	int			end_node;		/* -1 until an edge needs it */
	bool		overlay;		/* an execution is drawn over the flow */
} FlowGraph;


/* ---------------------------------------------------------------------
 * Building the graph from a definition
 * ---------------------------------------------------------------------
 */

static int
add_node(FlowGraph *g, NodeShape shape, const char *step_id, Jsonb *step)
{
	GraphNode  *n;

	if (g->nnodes == g->cap_nodes)
	{
		g->cap_nodes = g->cap_nodes ? g->cap_nodes * 2 : 16;
		g->nodes = g->nodes ? repalloc(g->nodes, sizeof(GraphNode) * g->cap_nodes)
			: palloc(sizeof(GraphNode) * g->cap_nodes);
	}
	n = &g->nodes[g->nnodes];
	memset(n, 0, sizeof(GraphNode));
	n->shape = shape;
	n->step_id = step_id ? pstrdup(step_id) : NULL;
	n->step = step;
	n->state = g->overlay ? STATE_NOT_RUN : STATE_PLAIN;
	return g->nnodes++;
}

static void
add_edge(FlowGraph *g, int from, int to, EdgeKind kind, char *label, char *branch_id)
{
	GraphEdge  *e;

	if (g->nedges == g->cap_edges)
	{
		g->cap_edges = g->cap_edges ? g->cap_edges * 2 : 32;
		g->edges = g->edges ? repalloc(g->edges, sizeof(GraphEdge) * g->cap_edges)
			: palloc(sizeof(GraphEdge) * g->cap_edges);
	}
	e = &g->edges[g->nedges++];
	memset(e, 0, sizeof(GraphEdge));
	e->from = from;
	e->to = to;
	e->kind = kind;
	e->label = label;
	e->branch_id = branch_id;
}

static int
index_cmp(const void *a, const void *b)
{
	return strcmp(((const StepIndexEntry *) a)->id, ((const StepIndexEntry *) b)->id);
}

/* the node of a step, or -1 */
static int
find_step(FlowGraph *g, const char *id)
{
	StepIndexEntry key;
	StepIndexEntry *hit;

	if (id == NULL || g->nindex == 0)
		return -1;
	key.id = id;
	hit = bsearch(&key, g->index, g->nindex, sizeof(StepIndexEntry), index_cmp);
	return hit ? hit->node : -1;
}

/* the node an edge to step "id" leads to: the step, or a "missing" node */
static int
target_node(FlowGraph *g, const char *id)
{
	int			node = find_step(g, id);
	int			i;

	if (node >= 0)
		return node;
	for (i = 0; i < g->nnodes; i++)
	{
		if (g->nodes[i].shape == SHAPE_MISSING && strcmp(g->nodes[i].step_id, id) == 0)
			return i;
	}
	node = add_node(g, SHAPE_MISSING, id, NULL);
	snprintf(g->nodes[node].name, sizeof(g->nodes[node].name), "m%d", ++g->nmissing);
	g->nodes[node].lines = list_make1(psprintf("missing step %s",
											   allma_picture_clip(id, ID_CHARS)));
	return node;
}

static int
end_node(FlowGraph *g)
{
	if (g->end_node < 0)
	{
		g->end_node = add_node(g, SHAPE_END, NULL, NULL);
		strlcpy(g->nodes[g->end_node].name, "e0", sizeof(g->nodes[g->end_node].name));
		g->nodes[g->end_node].lines = list_make1(pstrdup("end"));
	}
	return g->end_node;
}

/*
 * text_of: a field as text: a string as is, another JSON value as JSON,
 * NULL when absent.
 */
static char *
text_of(Jsonb *obj, const char *key)
{
	Jsonb	   *v = allma_jsonb_get(obj, key);
	JsonbValue	scalar;

	if (v == NULL)
		return NULL;
	if (allma_jsonb_scalar(v, &scalar) && scalar.type == jbvString)
		return pnstrdup(scalar.val.string.val, scalar.val.string.len);
	return allma_jsonb_to_cstring(v);
}

/* a field of the step itself, of its literals, or of its customConfig */
static Jsonb *
step_setting(Jsonb *step, const char *key)
{
	Jsonb	   *v = allma_jsonb_get(step, key);

	if (v == NULL)
		v = allma_jsonb_get(allma_jsonb_get(step, "literals"), key);
	if (v == NULL)
		v = allma_jsonb_get(allma_jsonb_get(step, "customConfig"), key);
	return v;
}

static bool
is_subflow_call(const char *type, const char *module)
{
	return strcmp(type, "START_FLOW_EXECUTION") == 0 ||
		strcmp(type, "START_SUB_FLOW") == 0 ||
		(module != NULL && strcmp(module, "system/start-flow-execution") == 0);
}

/* the third label line of a sub-flow call: which flow it starts, and how */
static char *
subflow_note(Jsonb *step, const char *type)
{
	StringInfoData buf;
	char	   *child;
	char	   *version;
	bool		sync = false;

	initStringInfo(&buf);
	if (strcmp(type, "START_SUB_FLOW") == 0)
	{
		char	   *mode = text_of(step, "subFlowExecutionMode");

		child = text_of(step, "subFlowDefinitionId");
		version = text_of(step, "subFlowVersion");
		sync = mode == NULL || strcmp(mode, "SYNC") == 0;
	}
	else
	{
		Jsonb	   *s = step_setting(step, "sync");
		JsonbValue	v;

		child = text_of(step, "flowDefinitionId");
		if (child == NULL)
			child = text_of(allma_jsonb_get(step, "literals"), "flowDefinitionId");
		if (child == NULL)
			child = text_of(allma_jsonb_get(step, "customConfig"), "flowDefinitionId");
		version = NULL;
		if (step_setting(step, "flowVersion") != NULL)
		{
			Jsonb	   *vv = step_setting(step, "flowVersion");

			version = allma_jsonb_scalar(vv, &v) && v.type == jbvString
				? pnstrdup(v.val.string.val, v.val.string.len) : allma_jsonb_to_cstring(vv);
		}
		sync = s != NULL && allma_jsonb_scalar(s, &v) && v.type == jbvBool && v.val.boolean;
	}
	appendStringInfo(&buf, "starts flow %s",
					 child ? allma_picture_clip(child, NOTE_CHARS) : "(not set)");
	if (version != NULL && strcmp(version, "LATEST_PUBLISHED") != 0)
		appendStringInfo(&buf, " version %s", allma_picture_clip(version, 20));
	appendStringInfoString(&buf, sync ? " (sync)" : " (async)");
	return buf.data;
}

/* shape and label lines of a step node */
static void
describe_step(GraphNode *n)
{
	char	   *type = allma_picture_step_type(n->step);
	char	   *module = allma_jsonb_get_cstring(n->step, "moduleIdentifier");
	char	   *note = NULL;

	n->lines = list_make1(allma_picture_clip(n->step_id, ID_CHARS));
	if (module != NULL)
		n->lines = lappend(n->lines, psprintf("%s, %s", type, allma_picture_clip(module, NOTE_CHARS)));
	else
		n->lines = lappend(n->lines, type);

	n->shape = SHAPE_STEP;
	if (is_subflow_call(type, module))
	{
		n->shape = SHAPE_SUBFLOW;
		note = subflow_note(n->step, type);
	}
	else if (strcmp(type, "END_FLOW") == 0)
		n->shape = SHAPE_END_FLOW;
	else if (strcmp(type, "PARALLEL_FORK_MANAGER") == 0)
	{
		char	   *items = text_of(n->step, "itemsPath");

		n->shape = SHAPE_FORK;
		if (items != NULL)
			note = psprintf("for each %s", allma_picture_clip(items, NOTE_CHARS));
	}
	else if (strcmp(type, "WAIT_FOR_EXTERNAL_EVENT") == 0)
	{
		char	   *key = text_of(n->step, "correlationKeyTemplate");

		n->shape = SHAPE_WAIT;
		note = psprintf("waits for event %s", key ? allma_picture_clip(key, NOTE_CHARS) : "(no key)");
	}
	else if (strcmp(type, "POLL_EXTERNAL_API") == 0)
	{
		double		secs;

		n->shape = SHAPE_POLL;
		if (allma_jsonb_get_number(allma_jsonb_get(n->step, "pollingConfig"), "intervalSeconds", &secs))
			note = psprintf("polls every %g s", secs);
		else
			note = pstrdup("polls");
	}
	else if (strcmp(type, "EMAIL_START_POINT") == 0 || strcmp(type, "SCHEDULE_START_POINT") == 0)
	{
		char	   *what = text_of(n->step, type[0] == 'E' ? "emailAddress" : "scheduleExpression");

		n->shape = SHAPE_TRIGGER;
		note = psprintf("%s trigger%s%s", type[0] == 'E' ? "email" : "schedule",
						what ? " " : "", what ? allma_picture_clip(what, NOTE_CHARS) : "");
	}
	if (note != NULL)
		n->lines = lappend(n->lines, note);
}

/*
 * step_targets lists, in order, the steps a step can lead to: transitions,
 * default, fork branches, catch rules, fallback (the breadth-first order of
 * the nodes follows it).
 */
static List *
step_targets(Jsonb *step)
{
	List	   *ids = NIL;
	ListCell   *lc;
	char	   *id;
	Jsonb	   *on_error = allma_jsonb_get(step, "onError");

	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(step, "transitions")))
		if ((id = allma_jsonb_get_cstring(lfirst(lc), "nextStepInstanceId")) != NULL)
			ids = lappend(ids, id);
	if ((id = allma_jsonb_get_cstring(step, "defaultNextStepInstanceId")) != NULL)
		ids = lappend(ids, id);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(step, "parallelBranches")))
		if ((id = allma_jsonb_get_cstring(lfirst(lc), "stepInstanceId")) != NULL)
			ids = lappend(ids, id);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(on_error, "catch")))
		if ((id = allma_jsonb_get_cstring(lfirst(lc), "nextStepInstanceId")) != NULL)
			ids = lappend(ids, id);
	if ((id = allma_jsonb_get_cstring(on_error, "fallbackStepInstanceId")) != NULL)
		ids = lappend(ids, id);
	return ids;
}

/* "catch ErrA, ErrB" or "catch all" */
static char *
catch_label(Jsonb *rule)
{
	List	   *names = allma_jsonb_array_elements(allma_jsonb_get(rule, "errorEquals"));
	StringInfoData buf;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "catch ");
	foreach(lc, names)
	{
		JsonbValue	v;

		if (!allma_jsonb_scalar(lfirst(lc), &v) || v.type != jbvString)
			continue;
		if (v.val.string.len == 10 && strncmp(v.val.string.val, "States.ALL", 10) == 0)
			return pstrdup("catch all");
		appendStringInfo(&buf, "%s%.*s", first ? "" : ", ", v.val.string.len, v.val.string.val);
		first = false;
	}
	if (first)
		return pstrdup("catch all");
	return allma_picture_clip(buf.data, CONDITION_CHARS);
}

static void
add_step_edges(FlowGraph *g, int node)
{
	Jsonb	   *step = g->nodes[node].step;
	List	   *transitions = allma_jsonb_array_elements(allma_jsonb_get(step, "transitions"));
	List	   *branches = allma_jsonb_array_elements(allma_jsonb_get(step, "parallelBranches"));
	Jsonb	   *on_error = allma_jsonb_get(step, "onError");
	char	   *def = allma_jsonb_get_cstring(step, "defaultNextStepInstanceId");
	char	   *fallback = allma_jsonb_get_cstring(on_error, "fallbackStepInstanceId");
	ListCell   *lc;
	int			i = 0;

	foreach(lc, transitions)
	{
		char	   *next = allma_jsonb_get_cstring(lfirst(lc), "nextStepInstanceId");
		char	   *cond = text_of(lfirst(lc), "condition");
		char	   *label;

		i++;
		if (next == NULL)
			continue;
		label = allma_picture_clip(cond ? cond : "(no condition)", CONDITION_CHARS);
		if (list_length(transitions) > 1)
			label = psprintf("%d: %s", i, label);
		add_edge(g, node, target_node(g, next), EDGE_TRANSITION, label, NULL);
	}

	if (g->nodes[node].shape == SHAPE_END_FLOW)
		add_edge(g, node, end_node(g), EDGE_END, NULL, NULL);
	else if (def != NULL)
		add_edge(g, node, target_node(g, def), EDGE_DEFAULT,
				 transitions != NIL ? pstrdup("default") :
				 branches != NIL ? pstrdup("after the branches") : NULL, NULL);
	else if (transitions != NIL)
		add_edge(g, node, end_node(g), EDGE_NO_MATCH, pstrdup("no match"), NULL);
	else
		add_edge(g, node, end_node(g), EDGE_END, NULL, NULL);

	foreach(lc, branches)
	{
		char	   *first = allma_jsonb_get_cstring(lfirst(lc), "stepInstanceId");
		char	   *branch_id = text_of(lfirst(lc), "branchId");
		char	   *cond = text_of(lfirst(lc), "condition");
		char	   *label;

		if (first == NULL)
			continue;
		label = psprintf("branch %s", allma_picture_clip(branch_id ? branch_id : "?", ID_CHARS));
		if (cond != NULL)
			label = psprintf("%s if %s", label, allma_picture_clip(cond, CONDITION_CHARS));
		add_edge(g, node, target_node(g, first), EDGE_BRANCH, label, branch_id);
	}

	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(on_error, "catch")))
	{
		char	   *next = allma_jsonb_get_cstring(lfirst(lc), "nextStepInstanceId");

		if (next != NULL)
			add_edge(g, node, target_node(g, next), EDGE_CATCH, catch_label(lfirst(lc)), NULL);
	}
	if (fallback != NULL)
		add_edge(g, node, target_node(g, fallback), EDGE_FALLBACK, pstrdup("fallback"), NULL);
}

/*
 * build_graph: the nodes (start marker, steps in breadth-first order from
 * the start step, then the unreachable ones in the definition's order) and
 * their edges.  start_override moves the start edge (an execution that
 * started at another step).
 */
static void
build_graph(FlowGraph *g, Jsonb *definition, const char *start_override)
{
	Jsonb	   *steps = allma_jsonb_get(definition, "steps");
	List	   *keys = allma_jsonb_object_keys(steps);
	char	   *start = allma_jsonb_get_cstring(definition, "startStepInstanceId");
	int			nsteps = list_length(keys);
	char	  **ids = palloc0(sizeof(char *) * (nsteps + 1));
	bool	   *placed = palloc0(sizeof(bool) * (nsteps + 1));
	int		   *queue = palloc(sizeof(int) * (nsteps + 1));
	StepIndexEntry *by_key = palloc(sizeof(StepIndexEntry) * (nsteps + 1));
	int			head = 0;
	int			tail = 0;
	int			start_node;
	int			i;
	ListCell   *lc;

	g->end_node = -1;

	/* a lookup from step id to its position in the definition */
	i = 0;
	foreach(lc, keys)
	{
		ids[i] = lfirst(lc);
		by_key[i].id = ids[i];
		by_key[i].node = i;
		i++;
	}
	qsort(by_key, nsteps, sizeof(StepIndexEntry), index_cmp);

	/* breadth-first from the start step */
	{
		StepIndexEntry k;
		StepIndexEntry *hit;

		k.id = start;
		hit = start ? bsearch(&k, by_key, nsteps, sizeof(StepIndexEntry), index_cmp) : NULL;
		if (hit)
		{
			queue[tail++] = hit->node;
			placed[hit->node] = true;
		}
		for (;;)
		{
			int			k_i;

			while (head < tail)
			{
				int			cur = queue[head++];
				ListCell   *lc2;

				foreach(lc2, step_targets(allma_jsonb_get(steps, ids[cur])))
				{
					k.id = lfirst(lc2);
					hit = bsearch(&k, by_key, nsteps, sizeof(StepIndexEntry), index_cmp);
					if (hit && !placed[hit->node])
					{
						placed[hit->node] = true;
						queue[tail++] = hit->node;
					}
				}
			}
			/* the unreachable steps, each with what only it reaches */
			for (k_i = 0; k_i < nsteps && placed[k_i]; k_i++)
				;
			if (k_i == nsteps)
				break;
			placed[k_i] = true;
			queue[tail++] = k_i;
		}
	}

	start_node = add_node(g, SHAPE_START, NULL, NULL);
	strlcpy(g->nodes[start_node].name, "s0", sizeof(g->nodes[start_node].name));
	g->nodes[start_node].lines = list_make1(pstrdup("start"));

	g->index = palloc(sizeof(StepIndexEntry) * (nsteps + 1));
	for (i = 0; i < nsteps; i++)
	{
		const char *id = ids[queue[i]];
		int			node = add_node(g, SHAPE_STEP, id, allma_jsonb_get(steps, id));

		snprintf(g->nodes[node].name, sizeof(g->nodes[node].name), "s%d", i + 1);
		describe_step(&g->nodes[node]);
		g->index[i].id = g->nodes[node].step_id;
		g->index[i].node = node;
	}
	g->nindex = nsteps;
	qsort(g->index, nsteps, sizeof(StepIndexEntry), index_cmp);

	if (start_override != NULL)
		start = (char *) start_override;
	if (start != NULL)
		add_edge(g, start_node, target_node(g, start), EDGE_START, NULL, NULL);
	for (i = 0; i < nsteps; i++)
		add_step_edges(g, i + 1);
}


/* ---------------------------------------------------------------------
 * The execution overlay
 * ---------------------------------------------------------------------
 */

/* the node of a step or of a missing step, without adding one; -1 if none */
static int
find_node(FlowGraph *g, const char *id)
{
	int			node = find_step(g, id);
	int			i;

	if (node >= 0 || id == NULL)
		return node;
	for (i = 0; i < g->nnodes; i++)
	{
		if (g->nodes[i].shape == SHAPE_MISSING && strcmp(g->nodes[i].step_id, id) == 0)
			return i;
	}
	return -1;
}

/*
 * mark_taken counts "count" passages from node "from" to step "next" (NULL:
 * the path ended there).  A step can have several edges to the same step
 * (a transition and the default, say); the history does not tell which one
 * was taken, and the first of them in the definition's order gets the count.
 */
static void
mark_taken(FlowGraph *g, int from, const char *next, const char *caught_by, int64 count)
{
	int			to = next ? find_node(g, next) : -1;
	int			i;

	if (next != NULL && to < 0)
		return;
	for (i = 0; i < g->nedges; i++)
	{
		GraphEdge  *e = &g->edges[i];
		bool		match;

		if (e->from != from)
			continue;
		if (next == NULL)
			match = e->kind == EDGE_END || e->kind == EDGE_NO_MATCH;
		else if (e->to != to)
			match = false;
		else if (caught_by != NULL && strcmp(caught_by, "onError.catch") == 0)
			match = e->kind == EDGE_CATCH;
		else if (caught_by != NULL && strcmp(caught_by, "onError.fallbackStepInstanceId") == 0)
			match = e->kind == EDGE_FALLBACK;
		else
			match = e->kind == EDGE_TRANSITION || e->kind == EDGE_DEFAULT;
		if (match)
		{
			e->taken += count;
			return;
		}
	}
}

static int64
get_int64(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* per step: attempts, runs, polls, uncaught failures, time, error name */
static void
overlay_steps(FlowGraph *g, Datum id)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {id};
	uint64		i;

	allma_picture_select("SELECT step_instance_id, "
							   "       count(*) FILTER (WHERE status IN ('COMPLETED', 'FAILED')), "
							   "       count(*) FILTER (WHERE status <> 'POLLING'), "
							   "       count(*) FILTER (WHERE status = 'POLLING'), "
							   "       count(*) FILTER (WHERE status = 'FAILED' AND next_step_instance_id IS NULL), "
							   "       (extract(epoch FROM sum(ended_at - started_at)) * 1000000)::bigint, "
							   "       min(error->>'errorName') FILTER (WHERE status = 'FAILED' AND next_step_instance_id IS NULL), "
							   "       count(*) FILTER (WHERE status = 'FAILED' AND next_step_instance_id IS NOT NULL), "
							   "       min(error->>'errorName') FILTER (WHERE status = 'FAILED' AND next_step_instance_id IS NOT NULL) "
							   "  FROM allma.step_executions WHERE execution_id = $1 "
							   " GROUP BY step_instance_id",
							   1, types, values, NULL, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *step_id = SPI_getvalue(tup, desc, 1);
		int			node = find_node(g, step_id);
		GraphNode  *n;

		if (node < 0)
			node = target_node(g, step_id);
		n = &g->nodes[node];
		n->runs = get_int64(tup, desc, 2);
		n->attempts = get_int64(tup, desc, 3);
		n->polls = get_int64(tup, desc, 4);
		n->failures = get_int64(tup, desc, 5);
		n->usecs = get_int64(tup, desc, 6);
		n->error_name = SPI_getvalue(tup, desc, 7);
		n->caught = get_int64(tup, desc, 8);
		n->caught_name = SPI_getvalue(tup, desc, 9);
	}
}

/* the edges taken, from each record's next step (or the path's end) */
static void
overlay_edges(FlowGraph *g, Datum id)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {id};
	uint64		i;

	allma_picture_select("SELECT step_instance_id, next_step_instance_id, "
							   "       details->>'caughtBy', count(*) "
							   "  FROM allma.step_executions "
							   " WHERE execution_id = $1 "
							   "   AND (next_step_instance_id IS NOT NULL OR status = 'COMPLETED') "
							   " GROUP BY 1, 2, 3",
							   1, types, values, NULL, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			from = find_node(g, SPI_getvalue(tup, desc, 1));

		if (from >= 0)
			mark_taken(g, from, SPI_getvalue(tup, desc, 2), SPI_getvalue(tup, desc, 3),
					   get_int64(tup, desc, 4));
	}
}

/*
 * overlay_branches: for each fork branch (branch id and first step), how
 * many of its branch paths are done, failed, running or waiting.  The live
 * branch paths (read by picture.c) come in as $2, since the caller cannot
 * read allma.execution_paths.
 */
static void
overlay_branches(FlowGraph *g, Datum id, List *live, TimestampTz now)
{
	Oid			types[2] = {UUIDOID, JSONBOID};
	Datum		values[2];
	StringInfoData json;
	ListCell   *lc;
	bool		first = true;
	uint64		i;

	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	foreach(lc, live)
	{
		AllmaLivePath *lp = lfirst(lc);

		if (lp->branch_id == NULL || lp->step_id == NULL)
			continue;
		appendStringInfo(&json, "%s{\"path_id\": " INT64_FORMAT ", \"branch_id\": ",
						 first ? "" : ", ", lp->path_id);
		escape_json(&json, lp->branch_id);
		appendStringInfoString(&json, ", \"step_id\": ");
		escape_json(&json, lp->step_id);
		appendStringInfo(&json, ", \"state\": \"%s\"}",
						 allma_picture_path_running(lp, now) ? "running" : "waiting");
		first = false;
	}
	appendStringInfoChar(&json, ']');
	values[0] = id;
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));

	allma_picture_select("WITH h AS ("
							   "  SELECT f.path_id, f.branch_id, f.step_instance_id AS first_step, "
							   "         CASE WHEN z.next_step_instance_id IS NULL THEN z.status END AS last_end "
							   "    FROM (SELECT DISTINCT ON (path_id) path_id, branch_id, step_instance_id "
							   "            FROM allma.step_executions "
							   "           WHERE execution_id = $1 AND path_id <> 0 "
							   "           ORDER BY path_id, seq) f "
							   "    JOIN (SELECT DISTINCT ON (path_id) path_id, status, next_step_instance_id "
							   "            FROM allma.step_executions "
							   "           WHERE execution_id = $1 AND path_id <> 0 "
							   "           ORDER BY path_id, seq DESC) z USING (path_id)), "
							   "l AS (SELECT * FROM jsonb_to_recordset($2) "
							   "        AS l(path_id bigint, branch_id text, step_id text, state text)), "
							   "p AS (SELECT coalesce(h.branch_id, l.branch_id) AS branch_id, "
							   "             coalesce(h.first_step, l.step_id) AS first_step, "
							   "             CASE WHEN l.state IS NOT NULL THEN l.state "
							   "                  WHEN h.last_end = 'COMPLETED' THEN 'done' "
							   "                  WHEN h.last_end = 'FAILED' THEN 'failed' "
							   "                  ELSE 'unfinished' END AS outcome "
							   "        FROM h FULL JOIN l ON l.path_id = h.path_id) "
							   "SELECT branch_id, first_step, "
							   "       count(*) FILTER (WHERE outcome = 'done'), "
							   "       count(*) FILTER (WHERE outcome = 'failed'), "
							   "       count(*) FILTER (WHERE outcome = 'running'), "
							   "       count(*) FILTER (WHERE outcome = 'waiting'), "
							   "       count(*) FILTER (WHERE outcome = 'unfinished') "
							   "  FROM p WHERE branch_id IS NOT NULL "
							   " GROUP BY 1, 2",
							   2, types, values, NULL, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *branch_id = SPI_getvalue(tup, desc, 1);
		int			to = find_node(g, SPI_getvalue(tup, desc, 2));
		static const char *const outcome[] = {"done", "failed", "running", "waiting", "unfinished"};
		int64		counts[5];
		int64		total = 0;
		StringInfoData buf;
		int			k;

		initStringInfo(&buf);
		for (k = 0; k < 5; k++)
		{
			counts[k] = get_int64(tup, desc, 3 + k);
			total += counts[k];
			if (counts[k] > 0 || k < 2)
				appendStringInfo(&buf, "%s" INT64_FORMAT " %s", buf.len ? ", " : "",
								 counts[k], outcome[k]);
		}
		for (k = 0; k < g->nedges; k++)
		{
			GraphEdge  *e = &g->edges[k];

			if (e->kind == EDGE_BRANCH && e->to == to && e->branch_id != NULL &&
				strcmp(e->branch_id, branch_id) == 0)
			{
				e->taken += total;
				e->summary = buf.data;
			}
		}
	}
}

/* the overlay's extra label lines and the state of each node */
static void
finish_overlay(FlowGraph *g)
{
	int			i;

	for (i = 0; i < g->nnodes; i++)
	{
		GraphNode  *n = &g->nodes[i];

		if (n->shape == SHAPE_START || n->shape == SHAPE_END)
			continue;
		if (n->attempts + n->polls > 0)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			allma_picture_append_duration(&buf, n->usecs);
			if (n->runs > 1)
				appendStringInfo(&buf, ", ran " INT64_FORMAT "x", n->runs);
			if (n->attempts > n->runs)
				appendStringInfo(&buf, ", " INT64_FORMAT " attempts", n->attempts);
			if (n->polls > 0)
				appendStringInfo(&buf, ", " INT64_FORMAT " polls", n->polls);
			n->lines = lappend(n->lines, buf.data);
		}
		if (n->failures > 0)
		{
			char	   *name = n->error_name ? allma_picture_clip(n->error_name, NOTE_CHARS) : "(no error name)";

			n->lines = lappend(n->lines, n->failures == n->runs
							   ? psprintf("FAILED: %s", name)
							   : psprintf("FAILED " INT64_FORMAT " of " INT64_FORMAT ": %s",
										  n->failures, n->runs, name));
		}
		if (n->caught > 0)
		{
			char	   *name = n->caught_name ? allma_picture_clip(n->caught_name, NOTE_CHARS) : "(no error name)";

			n->lines = lappend(n->lines, n->caught == 1
							   ? psprintf("caught: %s", name)
							   : psprintf("caught " INT64_FORMAT "x: %s", n->caught, name));
		}
		if (n->running > 0)
			n->lines = lappend(n->lines, n->running > 1 ? psprintf("running x%d", n->running) : pstrdup("running"));
		if (n->waiting > 0)
			n->lines = lappend(n->lines, n->waiting > 1 ? psprintf("waiting x%d", n->waiting) : pstrdup("waiting"));

		if (n->failures > 0)
			n->state = STATE_FAILED;
		else if (n->running > 0 || n->waiting > 0)
			n->state = STATE_RUNNING;
		else if (n->attempts + n->polls > 0)
			n->state = STATE_RAN;
		else
			n->state = STATE_NOT_RUN;
	}
}

static void
overlay_execution(FlowGraph *g, AllmaPictureExecution *ex)
{
	Datum		id = UUIDPGetDatum(&ex->id);
	List	   *live = NIL;
	ListCell   *lc;
	bool		truncated;
	bool		anything;
	int			i;

	overlay_steps(g, id);
	overlay_edges(g, id);
	if (strcmp(ex->status, "RUNNING") == 0)
		live = allma_picture_live_paths(ex, MAX_LIVE_PATHS, &truncated);
	foreach(lc, live)
	{
		AllmaLivePath *lp = lfirst(lc);
		int			node = find_node(g, lp->step_id);

		if (node < 0)
			continue;
		if (allma_picture_path_running(lp, ex->now))
			g->nodes[node].running++;
		else
			g->nodes[node].waiting++;
	}
	overlay_branches(g, id, live, ex->now);

	/* the start edge was taken if anything ran */
	anything = live != NIL;
	for (i = 0; i < g->nnodes && !anything; i++)
		anything = g->nodes[i].attempts + g->nodes[i].polls > 0;
	for (i = 0; i < g->nedges; i++)
		if (g->edges[i].kind == EDGE_START && anything)
			g->edges[i].taken = 1;
	finish_overlay(g);
}


/* ---------------------------------------------------------------------
 * Writers
 * ---------------------------------------------------------------------
 */

/*
 * is_line_break: the length of a UTF-8 line or paragraph separator (U+0085,
 * U+2028, U+2029) at p, or 0; renderers may end a line there.
 */
static int
is_line_break(const unsigned char *p)
{
	if (GetDatabaseEncoding() != PG_UTF8)
		return 0;
	if (p[0] == 0xC2 && p[1] == 0x85)
		return 2;
	if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))
		return 3;
	return 0;
}

/*
 * Mermaid: inside a quoted label only '"' ends the text, "#...;" is an
 * entity, '`' right after the quote starts Markdown, '|' ends edge texts
 * and '<', '>' and '&' are HTML in htmlLabels.  All of them become numeric
 * entities (#34; and so on); control characters and line breaks become
 * spaces.
 */
static void
append_mermaid_text(StringInfo buf, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
	{
		int			brk;

		if (*p < 0x20 || *p == 0x7f)
			appendStringInfoChar(buf, ' ');
		else if (strchr("\"#&<>|`", *p) != NULL)
			appendStringInfo(buf, "#%d;", (int) *p);
		else if ((brk = is_line_break(p)) > 0)
		{
			appendStringInfoChar(buf, ' ');
			p += brk - 1;
		}
		else
			appendStringInfoChar(buf, (char) *p);
	}
}

/*
 * DOT: in a quoted string '"' and '\' are escaped with a backslash (so no
 * text can make "\n", "\N" or "\G" escapes), and '&' becomes "&amp;" since
 * Graphviz reads entities in labels; control characters and line breaks
 * become spaces.
 */
static void
append_dot_text(StringInfo buf, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
	{
		int			brk;

		if (*p < 0x20 || *p == 0x7f)
			appendStringInfoChar(buf, ' ');
		else if (*p == '"' || *p == '\\')
		{
			appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, (char) *p);
		}
		else if (*p == '&')
			appendStringInfoString(buf, "&amp;");
		else if ((brk = is_line_break(p)) > 0)
		{
			appendStringInfoChar(buf, ' ');
			p += brk - 1;
		}
		else
			appendStringInfoChar(buf, (char) *p);
	}
}

static void
append_lines(StringInfo buf, List *lines, GraphFormat format)
{
	ListCell   *lc;

	foreach(lc, lines)
	{
		if (lc != list_head(lines))
			appendStringInfoString(buf, format == FORMAT_MERMAID ? "<br/>" : "\\n");
		if (format == FORMAT_MERMAID)
			append_mermaid_text(buf, lfirst(lc));
		else
			append_dot_text(buf, lfirst(lc));
	}
}

/* the text of an edge's label with the overlay's counts, or NULL */
static char *
edge_text(GraphEdge *e)
{
	if (e->summary != NULL)
		return e->label ? psprintf("%s: %s", e->label, e->summary) : e->summary;
	if (e->taken > 1)
		return e->label ? psprintf("%s (x" INT64_FORMAT ")", e->label, e->taken)
			: psprintf("x" INT64_FORMAT, e->taken);
	return e->label;
}

static bool
is_error_edge(GraphEdge *e)
{
	return e->kind == EDGE_FALLBACK || e->kind == EDGE_CATCH;
}

/* appends "class a,b,c name" for the nodes in a state */
static void
mermaid_class(StringInfo buf, FlowGraph *g, NodeState state, bool markers, const char *name)
{
	int			i;
	bool		any = false;

	for (i = 0; i < g->nnodes; i++)
	{
		GraphNode  *n = &g->nodes[i];
		bool		marker = n->shape == SHAPE_START || n->shape == SHAPE_END;
		bool		in;

		if (markers)
			in = marker;
		else if (state == STATE_PLAIN)
			in = n->shape == SHAPE_MISSING;
		else
			in = !marker && n->state == state;
		if (!in)
			continue;
		appendStringInfo(buf, "%s%s", any ? "," : "    class ", n->name);
		any = true;
	}
	if (any)
		appendStringInfo(buf, " %s\n", name);
}

/* appends "linkStyle 1,2 style" for the edges selected */
static void
mermaid_link_style(StringInfo buf, FlowGraph *g, int which, const char *style)
{
	int			i;
	bool		any = false;

	for (i = 0; i < g->nedges; i++)
	{
		GraphEdge  *e = &g->edges[i];
		bool		in;

		if (which == 0)
			in = is_error_edge(e);
		else if (which == 1)
			in = e->taken > 0;
		else
			in = e->taken == 0;
		if (!in)
			continue;
		appendStringInfo(buf, "%s%d", any ? "," : "    linkStyle ", i);
		any = true;
	}
	if (any)
		appendStringInfo(buf, " %s\n", style);
}

static void
write_mermaid(FlowGraph *g, const char *title, StringInfo buf)
{
	int			i;

	appendStringInfoString(buf, "flowchart TD\n    %% ");
	append_mermaid_text(buf, title);
	appendStringInfoChar(buf, '\n');
	for (i = 0; i < g->nnodes; i++)
	{
		GraphNode  *n = &g->nodes[i];

		appendStringInfo(buf, "    %s%s", n->name, shape_styles[n->shape].mermaid_open);
		append_lines(buf, n->lines, FORMAT_MERMAID);
		appendStringInfo(buf, "%s\n", shape_styles[n->shape].mermaid_close);
	}
	for (i = 0; i < g->nedges; i++)
	{
		GraphEdge  *e = &g->edges[i];
		const char *arrow;
		char	   *text = edge_text(e);

		if (e->kind == EDGE_BRANCH)
			arrow = "==>";
		else if (e->kind == EDGE_NO_MATCH || is_error_edge(e))
			arrow = "-.->";
		else
			arrow = "-->";
		appendStringInfo(buf, "    %s %s", g->nodes[e->from].name, arrow);
		if (text != NULL)
		{
			appendStringInfoString(buf, "|\"");
			append_mermaid_text(buf, text);
			appendStringInfoString(buf, "\"|");
		}
		appendStringInfo(buf, " %s\n", g->nodes[e->to].name);
	}

	appendStringInfoString(buf,
						   "    classDef marker fill:#37474f,stroke:#37474f,color:#ffffff\n"
						   "    classDef missing fill:#ffffff,stroke:#c62828,stroke-dasharray:4 3,color:#c62828\n");
	if (g->overlay)
		appendStringInfoString(buf,
							   "    classDef ran fill:#e8f5e9,stroke:#2e7d32,stroke-width:2px\n"
							   "    classDef failed fill:#ffebee,stroke:#c62828,stroke-width:3px\n"
							   "    classDef running fill:#e3f2fd,stroke:#1565c0,stroke-width:3px\n"
							   "    classDef notrun fill:#fafafa,stroke:#bdbdbd,color:#9e9e9e\n");
	mermaid_class(buf, g, STATE_PLAIN, true, "marker");
	if (g->overlay)
	{
		mermaid_class(buf, g, STATE_RAN, false, "ran");
		mermaid_class(buf, g, STATE_FAILED, false, "failed");
		mermaid_class(buf, g, STATE_RUNNING, false, "running");
		mermaid_class(buf, g, STATE_NOT_RUN, false, "notrun");
		mermaid_link_style(buf, g, 1, "stroke:#2e7d32,stroke-width:3px");
		mermaid_link_style(buf, g, 2, "stroke:#bdbdbd");
	}
	else
	{
		mermaid_class(buf, g, STATE_PLAIN, false, "missing");
		mermaid_link_style(buf, g, 0, "stroke:#c62828");
	}
}

static void
write_dot(FlowGraph *g, const char *title, StringInfo buf)
{
	int			i;

	appendStringInfoString(buf, "digraph allma {\n    graph [label=\"");
	append_dot_text(buf, title);
	appendStringInfoString(buf,
						   "\", labelloc=t, fontname=\"Helvetica,Arial,sans-serif\", fontsize=12];\n"
						   "    node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", color=\"#546e7a\", "
						   "fontname=\"Helvetica,Arial,sans-serif\", fontsize=10];\n"
						   "    edge [color=\"#546e7a\", fontname=\"Helvetica,Arial,sans-serif\", fontsize=9];\n");
	for (i = 0; i < g->nnodes; i++)
	{
		GraphNode  *n = &g->nodes[i];
		const char *state = "";

		if (n->shape != SHAPE_START && n->shape != SHAPE_END && n->shape != SHAPE_MISSING)
		{
			switch (n->state)
			{
				case STATE_RAN:
					state = ", fillcolor=\"#e8f5e9\", color=\"#2e7d32\", penwidth=2";
					break;
				case STATE_FAILED:
					state = ", fillcolor=\"#ffebee\", color=\"#c62828\", penwidth=3";
					break;
				case STATE_RUNNING:
					state = ", fillcolor=\"#e3f2fd\", color=\"#1565c0\", penwidth=3";
					break;
				case STATE_NOT_RUN:
					state = ", fillcolor=\"#fafafa\", color=\"#bdbdbd\", fontcolor=\"#9e9e9e\"";
					break;
				default:
					break;
			}
		}
		appendStringInfo(buf, "    %s [label=\"", n->name);
		append_lines(buf, n->lines, FORMAT_DOT);
		appendStringInfo(buf, "\"%s%s];\n", shape_styles[n->shape].dot, state);
	}
	for (i = 0; i < g->nedges; i++)
	{
		GraphEdge  *e = &g->edges[i];
		char	   *text = edge_text(e);
		StringInfoData attrs;

		initStringInfo(&attrs);
		if (text != NULL)
		{
			appendStringInfoString(&attrs, "label=\"");
			append_dot_text(&attrs, text);
			appendStringInfoChar(&attrs, '"');
		}
		if (e->kind == EDGE_BRANCH)
			appendStringInfo(&attrs, "%sstyle=bold", attrs.len ? ", " : "");
		else if (e->kind == EDGE_NO_MATCH)
			appendStringInfo(&attrs, "%sstyle=dotted", attrs.len ? ", " : "");
		else if (is_error_edge(e))
			appendStringInfo(&attrs, "%sstyle=dashed", attrs.len ? ", " : "");
		if (g->overlay && e->taken > 0)
			appendStringInfo(&attrs, "%scolor=\"#2e7d32\", fontcolor=\"#2e7d32\", penwidth=2.5",
							 attrs.len ? ", " : "");
		else if (g->overlay)
			appendStringInfo(&attrs, "%scolor=\"#bdbdbd\", fontcolor=\"#9e9e9e\"", attrs.len ? ", " : "");
		else if (is_error_edge(e))
			appendStringInfo(&attrs, "%scolor=\"#c62828\", fontcolor=\"#c62828\"", attrs.len ? ", " : "");
		appendStringInfo(buf, "    %s -> %s", g->nodes[e->from].name, g->nodes[e->to].name);
		if (attrs.len > 0)
			appendStringInfo(buf, " [%s]", attrs.data);
		appendStringInfoString(buf, ";\n");
	}
	appendStringInfoString(buf, "}\n");
}


/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

static GraphFormat
graph_format(FunctionCallInfo fcinfo, int argno)
{
	char	   *f;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the graph format must not be null"),
				 errhint("Use 'mermaid' or 'dot'.")));
	f = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (pg_strcasecmp(f, "mermaid") == 0)
		return FORMAT_MERMAID;
	if (pg_strcasecmp(f, "dot") == 0)
		return FORMAT_DOT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown graph format \"%s\"", allma_picture_clip(f, 40)),
			 errhint("Use 'mermaid' or 'dot'.")));
	return FORMAT_MERMAID;		/* keep the compiler quiet */
}

static text *
render(FlowGraph *g, const char *title, GraphFormat format, MemoryContext outer)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (format == FORMAT_MERMAID)
		write_mermaid(g, title, &buf);
	else
		write_dot(g, title, &buf);
	MemoryContextSwitchTo(outer);
	return cstring_to_text_with_len(buf.data, buf.len);
}

/*
 * allma_flow_graph(flow_id text, version integer, format text) returns
 * text: the graph of a version of a flow (NULL version: the published one,
 * else the latest), read as the caller.
 */
Datum
allma_flow_graph(PG_FUNCTION_ARGS)
{
	MemoryContext outer = CurrentMemoryContext;
	GraphFormat format = graph_format(fcinfo, 2);
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	char	   *flow_id;
	FlowGraph	g;
	text	   *result;
	bool		isnull;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	flow_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';

	SPI_connect();
	allma_picture_select("SELECT v.version, v.definition FROM allma.flow_versions v "
							   " WHERE v.flow_id = $1 "
							   "   AND v.version = coalesce($2, (SELECT coalesce(f.published_version, f.latest_version) "
							   "                                   FROM allma.flows f WHERE f.flow_id = $1))",
							   2, types, values, nulls, 1);
	if (SPI_processed == 0)
	{
		allma_picture_select("SELECT 1 FROM allma.flows WHERE flow_id = $1",
								   1, types, values, NULL, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_UNKNOWN_FLOW),
					 errmsg("flow \"%s\" does not exist", flow_id)));
		if (!PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_UNKNOWN_VERSION),
					 errmsg("flow \"%s\" has no version %d", flow_id, PG_GETARG_INT32(1))));
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_VERSION),
				 errmsg("flow \"%s\" has no version", flow_id)));
	}

	memset(&g, 0, sizeof(g));
	g.flow_id = flow_id;
	g.version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	build_graph(&g, DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2, &isnull)),
				NULL);
	result = render(&g, psprintf("flow %s version %d", flow_id, g.version), format, outer);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}

/*
 * allma_execution_graph(execution_id uuid, format text) returns text: the
 * graph of the flow version an execution runs, with its history drawn
 * over it.  Only executions the caller may see (row-level security).
 */
Datum
allma_execution_graph(PG_FUNCTION_ARGS)
{
	MemoryContext outer = CurrentMemoryContext;
	GraphFormat format = graph_format(fcinfo, 1);
	AllmaPictureExecution ex;
	FlowGraph	g;
	text	   *result;
	char	   *title;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	SPI_connect();
	allma_picture_execution(PG_GETARG_UUID_P(0), &ex);
	if (ex.definition == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the definition of flow \"%s\" version %d is not visible to the current role",
						ex.flow_id, ex.version)));

	memset(&g, 0, sizeof(g));
	g.flow_id = ex.flow_id;
	g.version = ex.version;
	g.overlay = true;
	build_graph(&g, ex.definition, ex.start_step);
	overlay_execution(&g, &ex);
	title = psprintf("execution %s of flow %s version %d: %s",
					 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ex.id))),
					 ex.flow_id, ex.version, ex.status);
	result = render(&g, title, format, outer);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}
