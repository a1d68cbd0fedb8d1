/*-------------------------------------------------------------------------
 *
 * template.c
 *	  "{{ }}" templates: the Handlebars subset and helpers Allma flows use.
 *
 * Allma renders templates with Handlebars (noEscape, non-strict: a missing
 * value renders as nothing) plus a handful of its own helpers.  allma has a
 * small Handlebars engine written for that purpose: a parser that turns a
 * template into a tree once (template_parse.c), a whitespace-control pass
 * with Handlebars' "~" and standalone-line rules (template_ws.c),
 * JavaScript values and the value helpers (template_helpers.c), and, in
 * this file, the renderer that walks the tree against a jsonb context, the
 * block helpers, the bounded cache of parsed templates, the public
 * interface, and Allma's renderNestedTemplates
 * (allma_template_render_value).
 *
 * Supported syntax
 *	  {{path}} {{{path}}} {{&path}}, paths "a.b.c", "a/b", "a.[0]", "a.0",
 *	  "[any key]", "this", ".", "../x", "this.x", "./x", data variables
 *	  "@root", "@index", "@key", "@first", "@last", "@../index";
 *	  literals "str" 'str' 12 -1.5 true false null undefined; subexpressions
 *	  (helper args...); hash arguments key=value; block parameters as |a b|;
 *	  blocks {{#x}}..{{else}}..{{/x}}, {{^x}}..{{/x}}, {{else if y}} chains;
 *	  comments {{! }} {{!-- --}}; "~" whitespace control; "\{{" escapes.
 *	  Partials, decorators and raw blocks are rejected as parse errors.
 *
 * Helpers
 *	  Handlebars' built-ins if, unless, each, with, lookup, log, and Allma's
 *	  json, slice, eq, neq, gt, lt, default, base64, with_json_path.  A block
 *	  whose name is not a helper is a Mustache section (Handlebars'
 *	  blockHelperMissing): true renders the block, false/null/absent/[] the
 *	  else part, a non-empty array iterates, any other value becomes the
 *	  block's context.  A name used with arguments that is not a helper is an
 *	  error when it is rendered (Handlebars' "Missing helper").
 *
 * Where allma differs from Allma's Handlebars (deliberately)
 *	  - An object or array renders as JSON text (jsonb's output format, as
 *		allma_jsonb_to_display_text gives it), not "[object Object]" or "a,b".
 *	  - "json" gives compact JSON like JSON.stringify, but with jsonb's key
 *		order (shorter keys first) and numbers as jsonb stores them; "each"
 *		over an object visits keys in that same jsonb order.
 *	  - eq/neq compare objects and arrays by value (JavaScript compares
 *		identity); gt/lt treat objects and arrays as NaN (always false).
 *	  - eq/neq/gt/lt used as blocks ({{#eq a b}}..{{else}}..{{/eq}}) choose
 *		between the block and its else part.
 *	  - A helper argument that is not given is "undefined" (Handlebars passes
 *		its options object there), so {{slice xs 2}} slices to the end.
 *	  - slice also slices strings (by characters).
 *	  - {{a.0}} is accepted (Handlebars needs {{a.[0]}}), and {{elsewhere}}
 *		is a path (Handlebars reads an "else" prefix).
 *	  - The block-only helpers if/unless/each/with/with_json_path used as
 *		{{if x}} are render errors.
 *
 * Budget
 *	  One rendering may iterate blocks at most allma.template_max_iterations
 *	  times and produce at most allma.template_max_output bytes (one
 *	  allma_template_render_value call shares one budget across its
 *	  strings); beyond, it fails with SQLSTATE 54000.  What one #each
 *	  iteration allocates is freed after it, so memory stays near the
 *	  output size (docs/limits.md).
 *
 * Cache
 *	  Parsed templates live in a bounded cache (parsecache.h) of at most
 *	  TEMPLATE_CACHE_MAX_ENTRIES templates and TEMPLATE_CACHE_MAX_BYTES of
 *	  template text, emptied at once when either is reached.  Rendering a
 *	  tree never parses another template, so a tree is never freed while it
 *	  is being rendered.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/template.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "jsonb_util.h"
#include "limit_gucs.h"
#include "parsecache.h"
#include "path.h"
#include "template.h"
#include "template_tree.h"
#include "textutil.h"

PG_FUNCTION_INFO_V1(allma_render_template);

#define TEMPLATE_CACHE_MAX_ENTRIES	256
#define TEMPLATE_CACHE_MAX_BYTES	(8 * 1024 * 1024)

/* how many times a "$.path" result may itself be rendered again */
#define RENDER_VALUE_MAX_DEPTH		10

/* ----------------------------------------------------------------
 * Cache of parsed templates
 * ----------------------------------------------------------------
 */

static AllmaParseCache template_cache =
	ALLMA_PARSECACHE_INIT("allma template cache", TEMPLATE_CACHE_MAX_ENTRIES,
						  TEMPLATE_CACHE_MAX_BYTES);

/*
 * the parse function of the cache: the tree points into the text, so it
 * parses a copy that lives with the tree
 */
static void *
parse_template_text(const char *text, void *arg, char **errmsg)
{
	return allma_tmpl_parse(pstrdup(text), errmsg);
}

/*
 * template_get returns the parsed tree of "tmpl", from the cache or by
 * parsing it (and caching it).  On a syntax error it returns NULL with
 * *errmsg allocated in the caller's memory context.  Throws only on
 * out-of-memory.
 */
static TProgram *
template_get(const char *tmpl, char **errmsg)
{
	return allma_parsecache_get(&template_cache, tmpl, parse_template_text,
								NULL, errmsg);
}

/* ----------------------------------------------------------------
 * Renderer
 * ----------------------------------------------------------------
 */

/* the context stack, for "../" (a frame per context change) */
typedef struct CtxFrame
{
	JsonbValue *value;
	struct CtxFrame *parent;
} CtxFrame;

/* data variables of an #each iteration (@index, @key, @first, @last) */
typedef struct DataFrame
{
	struct DataFrame *parent;
	int			index;
	const char *key;			/* NULL when iterating an array */
	int			keylen;
	bool		first;
	bool		last;
} DataFrame;

/* block parameters in scope ("as |x y|") */
typedef struct BlockParams
{
	struct BlockParams *parent;
	int			n;
	char	  **names;
	JsonbValue **values;
} BlockParams;

typedef struct Env
{
	CtxFrame   *ctx;
	DataFrame  *data;
	BlockParams *bp;
} Env;

/*
 * What a rendering may still spend (allma.template_max_iterations and
 * allma.template_max_output).  One budget covers one allma_template_render
 * call, or every string of one allma_template_render_value call.
 */
typedef struct RenderBudget
{
	int64		iterations;		/* block iterations so far */
	int64		output;			/* bytes produced by earlier strings */
} RenderBudget;

typedef struct Renderer
{
	StringInfo	out;
	JsonbValue *root;
	RenderBudget *budget;
} Renderer;

static JsonbValue *eval_call(Renderer *R, const Env *env, TCall *call,
							 bool sexpr);
static void render_program(Renderer *R, const Env *outer, TProgram *program,
						   bool push, JsonbValue *ctx, DataFrame *data,
						   JsonbValue **bpvalues, int nbpvalues);

static void render_error(TCall *call, const char *fmt,...) pg_attribute_printf(2, 3) pg_attribute_noreturn();

/* throw a render error about "call", with its position */
static void
render_error(TCall *call, const char *fmt,...)
{
	va_list		args;
	StringInfoData buf;

	initStringInfo(&buf);
	va_start(args, fmt);
	allma_append_vformat(&buf, fmt, args);
	va_end(args);
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_TEMPLATE),
			 errmsg("%s", buf.data),
			 errdetail("The tag is at line %d, column %d of the template.",
					   call->line, call->column)));
}

/*
 * The budget checks: a template bomb ({{#each}} nested over large arrays)
 * fails fast, before it uses much time or memory.  SQLSTATE 54000
 * (program_limit_exceeded): a step fails with a PermanentStepError that
 * catch rules can handle.
 */
static void
count_iteration(Renderer *R, TCall *call)
{
	if (++R->budget->iterations > allma_template_max_iterations)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("template rendering exceeded allma.template_max_iterations (%d block iterations)",
						allma_template_max_iterations),
				 errdetail("The block at line %d, column %d of the template was iterating.",
						   call->line, call->column),
				 errhint("Iterate over fewer or smaller arrays, or ask an administrator to raise allma.template_max_iterations.")));
}

static void
check_output(Renderer *R, int adding)
{
	if (R->budget->output + (int64) R->out->len + adding >
		(int64) allma_template_max_output)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("template rendering exceeded allma.template_max_output (%d bytes)",
						allma_template_max_output),
				 errhint("Render less text, or ask an administrator to raise allma.template_max_output.")));
}

/* appends the display text of v to the output, within the output budget */
static void
append_value(Renderer *R, JsonbValue *v)
{
	allma_tmpl_append_display(R->out, v);
	check_output(R, 0);
}

static bool
block_param(const Env *env, const char *name, JsonbValue **value)
{
	BlockParams *bp;
	int			i;

	for (bp = env->bp; bp != NULL; bp = bp->parent)
	{
		for (i = 0; i < bp->n; i++)
		{
			if (strcmp(bp->names[i], name) == 0)
			{
				*value = bp->values[i];
				return true;
			}
		}
	}
	return false;
}

/* the value of a path in the current environment */
static JsonbValue *
lookup_path(Renderer *R, const Env *env, TPath *path)
{
	JsonbValue *v;
	int			start = 0;
	int			i;

	if (path->data)
	{
		DataFrame  *d = env->data;
		const char *name = path->nparts > 0 ? path->parts[0] : "";

		for (i = 0; i < path->depth && d != NULL; i++)
			d = d->parent;
		start = 1;
		if (strcmp(name, "root") == 0)
			v = R->root;
		else if (d == NULL)
			v = NULL;
		else if (strcmp(name, "index") == 0)
			v = allma_tmpl_int(d->index);
		else if (strcmp(name, "key") == 0)
			v = d->key ? allma_tmpl_string(d->key, d->keylen) : allma_tmpl_int(d->index);
		else if (strcmp(name, "first") == 0)
			v = allma_tmpl_bool(d->first);
		else if (strcmp(name, "last") == 0)
			v = allma_tmpl_bool(d->last);
		else
			v = NULL;
	}
	else if (!path->scoped && path->depth == 0 && path->nparts > 0 &&
			 block_param(env, path->parts[0], &v))
		start = 1;
	else
	{
		CtxFrame   *f = env->ctx;

		for (i = 0; i < path->depth && f != NULL; i++)
			f = f->parent;
		v = f ? f->value : NULL;
	}

	for (i = start; i < path->nparts && v != NULL; i++)
		v = allma_tmpl_property(v, path->parts[i]);
	return allma_tmpl_resolve_ref(v);
}

static JsonbValue *
eval_expr(Renderer *R, const Env *env, TExpr *e)
{
	switch (e->kind)
	{
		case TE_LITERAL:
			return e->undefined ? NULL : &e->literal;
		case TE_PATH:
			return lookup_path(R, env, e->path);
		case TE_SUBEXPR:
			return eval_call(R, env, e->call, true);
	}
	return NULL;
}

/* argument i of a call, NULL (undefined) when not given */
static JsonbValue *
arg(Renderer *R, const Env *env, TCall *call, int i)
{
	if (i >= call->nparams)
		return NULL;
	return eval_expr(R, env, call->params[i]);
}

static JsonbValue *
hash_arg(Renderer *R, const Env *env, TCall *call, const char *key)
{
	int			i;

	for (i = 0; i < call->nhash; i++)
	{
		if (strcmp(call->hash_keys[i], key) == 0)
			return eval_expr(R, env, call->hash_values[i]);
	}
	return NULL;
}

/*
 * call_helper runs a helper that returns a value (every helper but the
 * block-only if/unless/each/with/with_json_path).
 */
static JsonbValue *
call_helper(Renderer *R, const Env *env, TCall *call)
{
	JsonbValue *a;
	JsonbValue *b;

	switch (call->helper)
	{
		case H_IF:
		case H_UNLESS:
		case H_EACH:
		case H_WITH:
		case H_WITH_JSON_PATH:
			render_error(call, "template helper \"%s\" can only be used as a block, as in {{#%s ...}}...{{/%s}}",
						 call->head->parts[0], call->head->parts[0],
						 call->head->parts[0]);
			return NULL;
		case H_LOOKUP:
			return allma_tmpl_lookup(arg(R, env, call, 0), arg(R, env, call, 1));
		case H_LOG:
			return NULL;
		case H_JSON:
			return allma_tmpl_json(arg(R, env, call, 0));
		case H_SLICE:
			return allma_tmpl_slice(arg(R, env, call, 0), arg(R, env, call, 1),
								arg(R, env, call, 2));
		case H_EQ:
		case H_NEQ:
			a = arg(R, env, call, 0);
			b = arg(R, env, call, 1);
			return allma_tmpl_bool(allma_tmpl_strict_equals(a, b) == (call->helper == H_EQ));
		case H_GT:
		case H_LT:
			a = arg(R, env, call, 0);
			b = arg(R, env, call, 1);
			return allma_tmpl_bool(allma_tmpl_js_compare(a, b, call->helper == H_GT));
		case H_DEFAULT:
			a = arg(R, env, call, 0);
			if (a != NULL && a->type != jbvNull)
				return a;
			return arg(R, env, call, 1);
		case H_BASE64:
			return allma_tmpl_base64(arg(R, env, call, 0));
		case H_NONE:
			break;
	}
	elog(ERROR, "unexpected template helper %d", (int) call->helper);
	return NULL;
}

static void unknown_helper(TCall *call) pg_attribute_noreturn();

static void
unknown_helper(TCall *call)
{
	render_error(call, "unknown template helper \"%s\"", call->head->original);
}

/*
 * eval_call evaluates a mustache's or subexpression's "name args...":
 * a block parameter, a helper call, or a path lookup.  Throws
 * ERRCODE_ALLMA_INVALID_TEMPLATE for an unknown helper called with
 * arguments.
 */
static JsonbValue *
eval_call(Renderer *R, const Env *env, TCall *call, bool sexpr)
{
	JsonbValue *v;
	bool		has_args = call->nparams > 0 || call->nhash > 0;

	if (call->simple && block_param(env, call->head->parts[0], &v))
		return v;
	if (call->helper != H_NONE)
		return call_helper(R, env, call);
	if (has_args)
		unknown_helper(call);
	return lookup_path(R, env, call->head);
}

/* #each over an array or object; the else part when there is nothing */
static void
render_each(Renderer *R, const Env *env, TNode *block, JsonbValue *v)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	item;
	JsonbValue	key = {0};
	int			count;
	int			i = 0;
	bool		object;
	int			nbp = block->program ? block->program->nbparams : 0;
	MemoryContext outercxt = CurrentMemoryContext;
	MemoryContext itercxt;

	if (!allma_tmpl_is_array(v) && !allma_tmpl_is_object(v))
	{
		render_program(R, env, block->inverse, false, NULL, NULL, NULL, 0);
		return;
	}
	count = JsonContainerSize(v->val.binary.data);
	if (count == 0)
	{
		render_program(R, env, block->inverse, false, NULL, NULL, NULL, 0);
		return;
	}
	object = allma_tmpl_is_object(v);

	/*
	 * What one iteration allocates is freed after it: memory stays bounded
	 * however many iterations the budget allows.  The iterator lives
	 * outside (skipping nested containers, it allocates nothing more).
	 */
	itercxt = AllocSetContextCreate(outercxt, "allma template iteration",
									ALLOCSET_SMALL_SIZES);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
	{
		DataFrame	data;
		JsonbValue *elem;
		JsonbValue *bpvalues[2];

		if (tok == WJB_KEY)
		{
			key = item;
			continue;
		}
		if (tok != WJB_ELEM && tok != WJB_VALUE)
			continue;

		CHECK_FOR_INTERRUPTS();
		count_iteration(R, block->call);
		MemoryContextSwitchTo(itercxt);
		elem = palloc(sizeof(JsonbValue));
		*elem = item;
		data.parent = env->data;
		data.index = i;
		data.key = object ? key.val.string.val : NULL;
		data.keylen = object ? key.val.string.len : 0;
		data.first = (i == 0);
		data.last = (i == count - 1);
		bpvalues[0] = elem;
		bpvalues[1] = NULL;
		if (nbp > 1)
			bpvalues[1] = object ? allma_tmpl_string(key.val.string.val,
												key.val.string.len)
				: allma_tmpl_int(i);
		render_program(R, env, block->program, true, elem, &data, bpvalues, 2);
		MemoryContextSwitchTo(outercxt);
		MemoryContextReset(itercxt);
		i++;
	}
	MemoryContextDelete(itercxt);
}

/* Handlebars' blockHelperMissing: {{#value}} with no helper of that name */
static void
render_section(Renderer *R, const Env *env, TNode *block, JsonbValue *v)
{
	if (v != NULL && v->type == jbvBool && v->val.boolean)
		render_program(R, env, block->program, false, NULL, NULL, NULL, 0);
	else if (v == NULL || v->type == jbvNull ||
			 (v->type == jbvBool && !v->val.boolean))
		render_program(R, env, block->inverse, false, NULL, NULL, NULL, 0);
	else if (allma_tmpl_is_array(v))
		render_each(R, env, block, v);
	else
		render_program(R, env, block->program, true, v, NULL, NULL, 0);
}

/* the one argument of if/unless/each/with/with_json_path */
static JsonbValue *
single_arg(Renderer *R, const Env *env, TCall *call)
{
	if (call->nparams != 1)
		render_error(call, "template helper \"#%s\" requires exactly one argument",
					 call->head->parts[0]);
	return arg(R, env, call, 0);
}

/*
 * render_block renders a {{#name ...}} block: a built-in block helper, a
 * comparison helper choosing its block or else part, a value helper (its
 * value is output, as Handlebars does), or a section.
 */
static void
render_block(Renderer *R, const Env *env, TNode *block)
{
	TCall	   *call = block->call;
	JsonbValue *v;
	bool		cond;

	if (call->simple && block_param(env, call->head->parts[0], &v))
	{
		render_section(R, env, block, v);
		return;
	}

	switch (call->helper)
	{
		case H_IF:
		case H_UNLESS:
			v = single_arg(R, env, call);
			cond = allma_tmpl_truthy(v, allma_tmpl_truthy(hash_arg(R, env, call, "includeZero"),
												false));
			if (call->helper == H_UNLESS)
				cond = !cond;
			render_program(R, env, cond ? block->program : block->inverse,
						   false, NULL, NULL, NULL, 0);
			return;

		case H_EACH:
			render_each(R, env, block, single_arg(R, env, call));
			return;

		case H_WITH:
			v = single_arg(R, env, call);
			if (allma_tmpl_is_empty(v))
				render_program(R, env, block->inverse, false, NULL, NULL, NULL, 0);
			else
				render_program(R, env, block->program, true, v, NULL, &v, 1);
			return;

		case H_WITH_JSON_PATH:
			{
				JsonbValue *pathv = single_arg(R, env, call);
				JsonbValue *self = env->ctx ? env->ctx->value : NULL;
				JsonbValue *result = NULL;
				char	   *path;

				if (pathv == NULL || pathv->type != jbvString)
					render_error(call, "template helper \"#with_json_path\" requires a JSONPath string");
				path = pnstrdup(pathv->val.string.val, pathv->val.string.len);
				/* jsonpath-plus gives undefined for a falsy document */
				if (allma_tmpl_truthy(self, false) || allma_tmpl_is_array(self))
					result = allma_tmpl_jsonb(allma_path_get(JsonbValueToJsonb(self), path));
				render_program(R, env, block->program, false, NULL, NULL, &result, 1);
				return;
			}

		case H_EQ:
		case H_NEQ:
		case H_GT:
		case H_LT:
			v = call_helper(R, env, call);
			render_program(R, env, v->val.boolean ? block->program : block->inverse,
						   false, NULL, NULL, NULL, 0);
			return;

		case H_LOOKUP:
		case H_LOG:
		case H_JSON:
		case H_SLICE:
		case H_DEFAULT:
		case H_BASE64:
			append_value(R, call_helper(R, env, call));
			return;

		case H_NONE:
			break;
	}

	if (call->nparams > 0 || call->nhash > 0)
		unknown_helper(call);
	render_section(R, env, block, lookup_path(R, env, call->head));
}

/*
 * render_program renders the statements of "program" (NULL renders
 * nothing).  With push, ctx becomes the new context ("this").  data, when
 * not NULL, becomes the data frame.  Block parameters the program declares
 * take bpvalues in order (undefined past nbpvalues).
 */
static void
render_program(Renderer *R, const Env *outer, TProgram *program, bool push,
			   JsonbValue *ctx, DataFrame *data, JsonbValue **bpvalues,
			   int nbpvalues)
{
	Env			env = *outer;
	CtxFrame	frame;
	BlockParams bp;
	ListCell   *lc;

	if (program == NULL)
		return;
	check_stack_depth();

	if (push)
	{
		frame.value = ctx;
		frame.parent = outer->ctx;
		env.ctx = &frame;
	}
	if (data != NULL)
		env.data = data;
	if (program->nbparams > 0)
	{
		int			i;

		bp.parent = outer->bp;
		bp.n = program->nbparams;
		bp.names = program->bparams;
		bp.values = palloc(sizeof(JsonbValue *) * bp.n);
		for (i = 0; i < bp.n; i++)
			bp.values[i] = i < nbpvalues ? bpvalues[i] : NULL;
		env.bp = &bp;
	}

	foreach(lc, program->body)
	{
		TNode	   *node = lfirst(lc);

		switch (node->kind)
		{
			case TN_CONTENT:
				check_output(R, node->vallen);
				appendBinaryStringInfo(R->out, node->val, node->vallen);
				break;
			case TN_COMMENT:
				break;
			case TN_MUSTACHE:
				append_value(R, eval_call(R, &env, node->call, false));
				break;
			case TN_BLOCK:
				render_block(R, &env, node);
				break;
		}
	}
}

/*
 * render_tree renders a parsed template against ctx into a string
 * allocated in the caller's memory context.  Intermediate values live in
 * a temporary context.
 */
static char *
render_tree(TProgram *program, Jsonb *ctx, RenderBudget *budget)
{
	StringInfoData out;
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	Renderer	R;
	CtxFrame	root;
	DataFrame  *data = NULL;
	Env			env;

	initStringInfo(&out);
	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "allma template render",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);

	R.out = &out;
	R.budget = budget;
	R.root = allma_tmpl_jsonb(ctx);
	root.value = R.root;
	root.parent = NULL;
	env.ctx = &root;
	env.data = data;
	env.bp = NULL;
	render_program(&R, &env, program, false, NULL, NULL, NULL, 0);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
	budget->output += out.len;
	return out.data;
}

/* ----------------------------------------------------------------
 * Public interface
 * ----------------------------------------------------------------
 */

bool
allma_template_has_markup(const char *s)
{
	return strstr(s, "{{") != NULL;
}

/*
 * allma_template_check: does tmpl parse?  A template that parses is cached,
 * so checking a flow's templates also warms the cache.  Never throws
 * (except on out-of-memory).
 */
bool
allma_template_check(const char *tmpl, char **errmsg)
{
	if (errmsg)
		*errmsg = NULL;
	if (!allma_template_has_markup(tmpl))
		return true;
	return template_get(tmpl, errmsg) != NULL;
}

/*
 * allma_template_render renders tmpl against ctx (NULL: an undefined
 * context).  Throws ERRCODE_ALLMA_INVALID_TEMPLATE on a syntax error or a
 * render error (unknown helper, helper misuse); a bad JSONPath given to
 * with_json_path throws ERRCODE_ALLMA_INVALID_PATH; a rendering beyond its
 * budget throws ERRCODE_PROGRAM_LIMIT_EXCEEDED.
 */
static char *
render_with_budget(const char *tmpl, Jsonb *ctx, RenderBudget *budget)
{
	TProgram   *program;
	char	   *msg = NULL;

	if (!allma_template_has_markup(tmpl))
		return pstrdup(tmpl);
	program = template_get(tmpl, &msg);
	if (program == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_TEMPLATE),
				 errmsg("invalid template: %s", msg)));
	return render_tree(program, ctx, budget);
}

char *
allma_template_render(const char *tmpl, Jsonb *ctx)
{
	RenderBudget budget = {0};

	return render_with_budget(tmpl, ctx, &budget);
}

/*
 * Allma resolves a string that is, as a whole, "$." followed by anything
 * but line breaks (the JavaScript regex /^\$\..*$/, not trimmed).
 */
static bool
is_whole_jsonpath(const char *s, int len)
{
	int			i;

	if (len < 2 || s[0] != '$' || s[1] != '.')
		return false;
	for (i = 2; i < len; i++)
	{
		if (s[i] == '\n' || s[i] == '\r')
			return false;
		/* U+2028 and U+2029 end a line for JavaScript's "." too */
		if ((unsigned char) s[i] == 0xE2 && i + 2 < len &&
			(unsigned char) s[i + 1] == 0x80 &&
			((unsigned char) s[i + 2] == 0xA8 || (unsigned char) s[i + 2] == 0xA9))
			return false;
	}
	return true;
}

static bool
has_markup_len(const char *s, int len)
{
	int			i;

	for (i = 0; i + 1 < len; i++)
	{
		if (s[i] == '{' && s[i + 1] == '{')
			return true;
	}
	return false;
}

static bool
string_needs_render(JsonbValue *v)
{
	return v->type == jbvString &&
		(has_markup_len(v->val.string.val, v->val.string.len) ||
		 is_whole_jsonpath(v->val.string.val, v->val.string.len));
}

/*
 * render_string is Allma's renderValue for one string: interpolate "{{ }}",
 * then, if the whole result is "$.path", replace it by the value at that
 * path in ctx and render that again when it is a different string (at most
 * RENDER_VALUE_MAX_DEPTH times).  A string that looks like a path but is
 * not a valid one stays a string, as in Allma.  Returns NULL when the path
 * matches nothing (undefined).
 */
static JsonbValue *
render_string(const char *s, int len, Jsonb *ctx, int depth,
			  RenderBudget *budget)
{
	char	   *str = pnstrdup(s, len);
	char	   *msg = NULL;
	JsonbValue *found;

	if (has_markup_len(str, len))
	{
		str = render_with_budget(str, ctx, budget);
		len = strlen(str);
	}
	if (!is_whole_jsonpath(str, len) || !allma_path_check(str, &msg))
		return allma_tmpl_string(str, len);

	found = allma_tmpl_jsonb(allma_path_get(ctx, str));
	if (found != NULL && found->type == jbvString &&
		depth < RENDER_VALUE_MAX_DEPTH &&
		!(found->val.string.len == len &&
		  memcmp(found->val.string.val, str, len) == 0))
		return render_string(found->val.string.val, found->val.string.len,
							 ctx, depth + 1, budget);
	return found;
}

/*
 * allma_template_render_value is Allma's renderNestedTemplates: it walks
 * objects and arrays and renders every string value (not keys) with
 * render_string.  When a "$.path" matches nothing (JavaScript's undefined),
 * an object member is dropped (JSON.stringify drops undefined members), an
 * array element becomes null, and a top-level value becomes JSON null.
 * Returns value itself when no string needs rendering.  Throws what
 * allma_template_render throws.
 */
/*
 * allma_template_value_needs_render: whether some string of value holds a
 * template, i.e. whether allma_template_render_value would change it (the
 * caller can skip building a template context when it would not)
 */
bool
allma_template_value_needs_render(Jsonb *value)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;

	if (value == NULL)
		return false;
	it = JsonbIteratorInit(&value->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && string_needs_render(&v))
			return true;
	}
	return false;
}

Jsonb *
allma_template_render_value(Jsonb *value, Jsonb *ctx)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbValue	key;
	bool		have_key = false;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext tmpcxt;
	Jsonb	   *result;
	RenderBudget budget = {0};

	if (value == NULL)
		return NULL;

	/* fast path: nothing to render */
	if (!allma_template_value_needs_render(value))
		return value;

	if (ctx == NULL)
		ctx = allma_jsonb_empty_object();

	tmpcxt = AllocSetContextCreate(callercxt, "allma render value",
								   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(tmpcxt);

	if (JB_ROOT_IS_SCALAR(value))
	{
		JsonbValue *r;

		JsonbExtractScalar(&value->root, &v);
		r = render_string(v.val.string.val, v.val.string.len, ctx, 0, &budget);
		MemoryContextSwitchTo(callercxt);
		result = r ? JsonbValueToJsonb(r) : allma_jsonb_null();
		MemoryContextDelete(tmpcxt);
		return result;
	}

	it = JsonbIteratorInit(&value->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		JsonbValue *r;

		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				if (have_key)
				{
					pushJsonbValue(&state, WJB_KEY, &key);
					have_key = false;
				}
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_KEY:
				key = v;
				have_key = true;
				break;
			case WJB_VALUE:
				r = &v;
				if (string_needs_render(&v))
					r = render_string(v.val.string.val, v.val.string.len, ctx, 0, &budget);
				if (r != NULL)
				{
					pushJsonbValue(&state, WJB_KEY, &key);
					pushJsonbValue(&state, WJB_VALUE, r);
				}
				have_key = false;
				break;
			case WJB_ELEM:
				r = &v;
				if (string_needs_render(&v))
					r = render_string(v.val.string.val, v.val.string.len, ctx, 0, &budget);
				if (r == NULL)
				{
					v.type = jbvNull;
					r = &v;
				}
				pushJsonbValue(&state, WJB_ELEM, r);
				break;
			default:
				break;
		}
	}

	MemoryContextSwitchTo(callercxt);
	result = JsonbValueToJsonb(res);
	MemoryContextDelete(tmpcxt);
	return result;
}

/*
 * allma_render_template(template text, context jsonb) RETURNS text
 */
Datum
allma_render_template(PG_FUNCTION_ARGS)
{
	char	   *tmpl = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *ctx = PG_GETARG_JSONB_P(1);

	PG_RETURN_TEXT_P(cstring_to_text(allma_template_render(tmpl, ctx)));
}

/*
 * Test hooks, not declared by the extension script: the regression tests
 * declare them (CREATE FUNCTION ... AS 'MODULE_PATHNAME', ...) to reach
 * allma_template_check and allma_template_render_value from SQL.
 *
 * allma_test_template_check(template text) RETURNS text: NULL when the
 * template parses, else the error message.
 */
PG_FUNCTION_INFO_V1(allma_test_template_check);

Datum
allma_test_template_check(PG_FUNCTION_ARGS)
{
	char	   *tmpl = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *msg = NULL;

	if (allma_template_check(tmpl, &msg))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(msg));
}

/*
 * allma_test_render_value(value jsonb, context jsonb) RETURNS jsonb:
 * allma_template_render_value; the result says whether value came back as
 * the same pointer ({"same": true/false, "value": ...}).
 */
PG_FUNCTION_INFO_V1(allma_test_render_value);

Datum
allma_test_render_value(PG_FUNCTION_ARGS)
{
	Jsonb	   *value = PG_GETARG_JSONB_P(0);
	Jsonb	   *ctx = PG_GETARG_JSONB_P(1);
	Jsonb	   *result = allma_template_render_value(value, ctx);
	Jsonb	   *out;

	out = allma_jsonb_set_key(allma_jsonb_empty_object(), "same",
							  allma_jsonb_bool(result == value));
	out = allma_jsonb_set_key(out, "value", result);
	PG_RETURN_JSONB_P(out);
}
