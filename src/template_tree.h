/*-------------------------------------------------------------------------
 *
 * template_tree.h
 *	  The parsed form of "{{ }}" templates and the functions the parts of
 *	  the template engine share: the parser (template_parse.c), the
 *	  whitespace-control pass (template_ws.c), JavaScript values and value
 *	  helpers (template_helpers.c) and the renderer (template.c).  Internal
 *	  to those files: everything else goes through template.h.
 *
 * IDENTIFICATION
 *	  src/template_tree.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_TEMPLATE_TREE_H
#define ALLMA_TEMPLATE_TREE_H

#include "allma.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* deepest nesting of blocks and subexpressions the parser accepts */
#define TEMPLATE_MAX_NESTING		100

typedef enum THelper
{
	H_NONE = 0,
	H_IF,
	H_UNLESS,
	H_EACH,
	H_WITH,
	H_LOOKUP,
	H_LOG,
	H_JSON,
	H_SLICE,
	H_EQ,
	H_NEQ,
	H_GT,
	H_LT,
	H_DEFAULT,
	H_BASE64,
	H_WITH_JSON_PATH
} THelper;


/*
 * A path: "a.b", "../x", "this.y", "@index", "@root.z".  "this", "." and
 * ".." segments are folded into "scoped" and "depth"; parts holds the rest.
 */
typedef struct TPath
{
	char	   *original;		/* source text */
	bool		data;			/* starts with "@" */
	bool		scoped;			/* starts with "this", "." or ".." */
	int			depth;			/* number of ".." segments */
	int			nparts;
	char	  **parts;
} TPath;

typedef enum TExprKind
{
	TE_PATH,
	TE_LITERAL,
	TE_SUBEXPR
} TExprKind;

struct TCall;

typedef struct TExpr
{
	TExprKind	kind;
	TPath	   *path;			/* TE_PATH */
	JsonbValue	literal;		/* TE_LITERAL (unless undefined) */
	bool		undefined;		/* TE_LITERAL "undefined" */
	struct TCall *call;			/* TE_SUBEXPR */
} TExpr;

/* a mustache's, block's or subexpression's "name args... key=value..." */
typedef struct TCall
{
	TPath	   *head;			/* the name; a literal name becomes a path */
	char	   *head_src;		/* source text of the name (close tag match) */
	bool		simple;			/* a plain identifier: a helper or a lookup */
	THelper		helper;			/* helper it names, when simple */
	int			nparams;
	TExpr	  **params;
	int			nhash;
	char	  **hash_keys;
	TExpr	  **hash_values;
	int			line;			/* position, for render errors */
	int			column;
} TCall;

typedef struct TStrip
{
	bool		open;			/* "{{~" */
	bool		close;			/* "~}}" */
} TStrip;

typedef struct TProgram
{
	List	   *body;			/* of TNode */
	int			nbparams;		/* block parameters declared with "as |..|" */
	char	  **bparams;
	bool		chained;		/* holds only an "{{else x}}" block */
} TProgram;

typedef enum TNodeKind
{
	TN_CONTENT,
	TN_MUSTACHE,
	TN_BLOCK,
	TN_COMMENT
} TNodeKind;

typedef struct TNode
{
	TNodeKind	kind;

	/* TN_CONTENT: text, and the text before whitespace control trimmed it */
	const char *orig;
	int			origlen;
	const char *val;
	int			vallen;
	bool		lstripped;
	bool		rstripped;

	/* TN_MUSTACHE, TN_BLOCK */
	TCall	   *call;

	/* TN_MUSTACHE, TN_COMMENT */
	TStrip		strip;

	/* TN_BLOCK */
	TProgram   *program;		/* may be NULL ({{^x}} without else) */
	TProgram   *inverse;		/* may be NULL */
	TStrip		open_strip;
	TStrip		inverse_strip;
	TStrip		close_strip;
} TNode;

/* Handlebars' whitespace characters */
static inline bool
template_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

/*
 * template_parse.c: parses src into a tree allocated in CurrentMemoryContext
 * (which points into src), whitespace control applied.  NULL with *errmsg
 * on a syntax error; never throws except on out-of-memory.
 */
extern TProgram *allma_tmpl_parse(const char *src, char **errmsg);

/* template_ws.c: applies Handlebars' "~" and standalone-line rules */
extern void allma_tmpl_strip_whitespace(TProgram *program);

/*
 * template_helpers.c: values while rendering are JsonbValue *: a scalar, or
 * jbvBinary pointing into a container (never copied); NULL is undefined.
 */
extern JsonbValue *allma_tmpl_string(const char *s, int len);
extern JsonbValue *allma_tmpl_int(int64 i);
extern JsonbValue *allma_tmpl_bool(bool b);
extern JsonbValue *allma_tmpl_jsonb(Jsonb *jb);
extern bool allma_tmpl_is_array(JsonbValue *v);
extern bool allma_tmpl_is_object(JsonbValue *v);
extern bool allma_tmpl_truthy(JsonbValue *v, bool include_zero);
extern bool allma_tmpl_is_empty(JsonbValue *v);
extern void allma_tmpl_append_display(StringInfo out, JsonbValue *v);
extern char *allma_tmpl_display_text(JsonbValue *v, int *len);
extern bool allma_tmpl_strict_equals(JsonbValue *a, JsonbValue *b);
extern bool allma_tmpl_js_compare(JsonbValue *a, JsonbValue *b, bool greater);
extern JsonbValue *allma_tmpl_property(JsonbValue *v, const char *name);
extern JsonbValue *allma_tmpl_resolve_ref(JsonbValue *v);

/* the value helpers, and the helper a name stands for (H_NONE: none) */
extern JsonbValue *allma_tmpl_slice(JsonbValue *v, JsonbValue *startv, JsonbValue *endv);
extern JsonbValue *allma_tmpl_base64(JsonbValue *v);
extern JsonbValue *allma_tmpl_json(JsonbValue *v);
extern JsonbValue *allma_tmpl_lookup(JsonbValue *obj, JsonbValue *field);
extern THelper allma_tmpl_helper_by_name(const char *name);

#endif							/* ALLMA_TEMPLATE_TREE_H */
