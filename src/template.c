/*-------------------------------------------------------------------------
 *
 * template.c
 *	  "{{ }}" templates: the Handlebars subset and helpers Allma flows use.
 *
 * Allma renders templates with Handlebars (noEscape, non-strict: a missing
 * value renders as nothing) plus a handful of its own helpers.  This file
 * owns a small Handlebars engine written for that purpose: a parser that
 * turns a template into a tree once, a whitespace-control pass with
 * Handlebars' "~" and standalone-line rules, a renderer that walks the tree
 * against a jsonb context, and a bounded cache of parsed templates.  It also
 * owns Allma's renderNestedTemplates (allma_template_render_value).
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

#include <math.h>

#include "common/base64.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "compat.h"
#include "jsonb_util.h"
#include "parsecache.h"
#include "path.h"
#include "template.h"
#include "textutil.h"

PG_FUNCTION_INFO_V1(allma_render_template);

#define TEMPLATE_CACHE_MAX_ENTRIES	256
#define TEMPLATE_CACHE_MAX_BYTES	(8 * 1024 * 1024)

/* deepest nesting of blocks and subexpressions the parser accepts */
#define TEMPLATE_MAX_NESTING		100

/* how many times a "$.path" result may itself be rendered again */
#define RENDER_VALUE_MAX_DEPTH		10

/* ----------------------------------------------------------------
 * Parsed template tree
 * ----------------------------------------------------------------
 */

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

static const struct
{
	const char *name;
	THelper		helper;
}			helper_names[] =
{
	{"if", H_IF},
	{"unless", H_UNLESS},
	{"each", H_EACH},
	{"with", H_WITH},
	{"lookup", H_LOOKUP},
	{"log", H_LOG},
	{"json", H_JSON},
	{"slice", H_SLICE},
	{"eq", H_EQ},
	{"neq", H_NEQ},
	{"gt", H_GT},
	{"lt", H_LT},
	{"default", H_DEFAULT},
	{"base64", H_BASE64},
	{"with_json_path", H_WITH_JSON_PATH}
};

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

/* ----------------------------------------------------------------
 * Cache of parsed templates
 * ----------------------------------------------------------------
 */

static AllmaParseCache template_cache =
	ALLMA_PARSECACHE_INIT("allma template cache", TEMPLATE_CACHE_MAX_ENTRIES,
						  TEMPLATE_CACHE_MAX_BYTES);

static TProgram *parse_template(const char *src, char **errmsg);

/*
 * the parse function of the cache: the tree points into the text, so it
 * parses a copy that lives with the tree
 */
static void *
parse_template_text(const char *text, void *arg, char **errmsg)
{
	return parse_template(pstrdup(text), errmsg);
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
 * Lexer
 * ----------------------------------------------------------------
 */

typedef struct Parser
{
	const char *src;			/* whole template, NUL-terminated */
	const char *p;				/* current position */
	int			nesting;		/* blocks and subexpressions open */
	char	   *error;			/* first error */
} Parser;

typedef enum TokKind
{
	TK_INVALID,
	TK_EOF,
	TK_CLOSE,					/* }} */
	TK_CLOSE_UNESCAPED,			/* }}} */
	TK_OPEN_SEXPR,				/* ( */
	TK_CLOSE_SEXPR,				/* ) */
	TK_EQUALS,					/* = */
	TK_ID,
	TK_SEP,						/* . or / between path segments */
	TK_STRING,
	TK_NUMBER,
	TK_BOOLEAN,
	TK_NULL,
	TK_UNDEFINED,
	TK_DATA,					/* @ */
	TK_OPEN_BP,					/* as | */
	TK_CLOSE_BP					/* | */
} TokKind;

typedef struct Token
{
	TokKind		kind;
	const char *start;
	const char *end;
	bool		strip;			/* TK_CLOSE*: written with "~" */
	bool		literal;		/* TK_ID written as [..] */
	char	   *text;			/* TK_ID, TK_STRING, TK_NUMBER, TK_BOOLEAN */
} Token;

/* what follows a "{{" */
typedef enum OpenKind
{
	OK_EOF,						/* no more "{{" */
	OK_MUSTACHE,				/* {{ */
	OK_UNESCAPED,				/* {{{ */
	OK_AMP,						/* {{& */
	OK_BLOCK,					/* {{# */
	OK_INVERSE_BLOCK,			/* {{^x */
	OK_END,						/* {{/ */
	OK_ELSE,					/* {{else}} or {{^}} */
	OK_ELSE_CHAIN,				/* {{else x ...}} */
	OK_COMMENT					/* {{! }} */
} OpenKind;

/* where a program's statements stopped, and how */
typedef struct Terminator
{
	OpenKind	kind;			/* OK_EOF, OK_END, OK_ELSE or OK_ELSE_CHAIN */
	const char *at;				/* its "{{" */
	TStrip		strip;
} Terminator;

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

/* characters Handlebars allows in an identifier */
static bool
is_id_char(char c)
{
	if ((unsigned char) c >= 0x80)
		return true;
	if (c == '\0' || is_space(c))
		return false;
	return strchr("!\"#%&'()*+,./;<=>@[\\]^`{|}~", c) == NULL;
}

/*
 * what may follow an identifier (the end of the template is allowed here so
 * that "{{x" is reported as an unclosed tag)
 */
static bool
is_id_lookahead(char c)
{
	return c == '\0' || is_space(c) || strchr("=~}/.)|", c) != NULL;
}

/* what may follow a number or keyword literal */
static bool
is_literal_lookahead(char c)
{
	return c == '\0' || is_space(c) || strchr("~})", c) != NULL;
}

/* line and column (1-based, in characters) of "at" */
static void
source_position(const char *src, const char *at, int *line, int *column)
{
	const char *linestart = src;
	const char *c;

	*line = 1;
	for (c = src; c < at && *c; c++)
	{
		if (*c == '\n')
		{
			(*line)++;
			linestart = c + 1;
		}
	}
	*column = pg_mbstrlen_with_len(linestart, at - linestart) + 1;
}

/*
 * parse_fail records the first syntax error, with its position appended.
 * The parser never throws: callers test P->error and unwind.
 */
static void parse_fail(Parser *P, const char *at, const char *fmt,...) pg_attribute_printf(3, 4);

static void
parse_fail(Parser *P, const char *at, const char *fmt,...)
{
	va_list		args;
	StringInfoData buf;
	int			line;
	int			column;

	if (P->error != NULL)
		return;
	source_position(P->src, at, &line, &column);
	initStringInfo(&buf);
	va_start(args, fmt);
	allma_append_vformat(&buf, fmt, args);
	va_end(args);
	appendStringInfo(&buf, " at line %d, column %d", line, column);
	P->error = buf.data;
}

/* fail on an unexpected token, quoting (a prefix of) it */
static void
parse_fail_token(Parser *P, Token *t)
{
	if (t->kind == TK_EOF)
		parse_fail(P, t->start, "unexpected end of template inside \"{{\"");
	else if (t->kind == TK_INVALID && (*t->start == '"' || *t->start == '\''))
		parse_fail(P, t->start, "unterminated string");
	else if (t->kind == TK_INVALID && *t->start == '[')
		parse_fail(P, t->start, "unterminated \"[\"");
	else
	{
		int			len = t->end - t->start;

		if (len < 1)
			len = 1;
		if (len > 20)
			len = 20;
		len = pg_mbcliplen(t->start, strlen(t->start), len);
		parse_fail(P, t->start, "unexpected \"%.*s\"", len, t->start);
	}
}

/* scan a quoted string starting at p; returns its end or NULL */
static const char *
lex_string(const char *p, char **text)
{
	char		quote = *p;
	const char *q = p + 1;
	StringInfoData buf;

	initStringInfo(&buf);
	while (*q && *q != quote)
	{
		if (q[0] == '\\' && q[1] == quote)
		{
			appendStringInfoChar(&buf, quote);
			q += 2;
		}
		else
			appendStringInfoChar(&buf, *q++);
	}
	if (*q != quote)
		return NULL;
	*text = buf.data;
	return q + 1;
}

/* scan a "[...]" segment starting at p; returns its end or NULL */
static const char *
lex_bracket(const char *p, char **text)
{
	const char *q = p + 1;
	StringInfoData buf;

	initStringInfo(&buf);
	while (*q && *q != ']')
	{
		if (q[0] == '\\' && (q[1] == ']' || q[1] == '\\'))
		{
			appendStringInfoChar(&buf, q[1]);
			q += 2;
		}
		else
			appendStringInfoChar(&buf, *q++);
	}
	if (*q != ']')
		return NULL;
	*text = buf.data;
	return q + 1;
}

/* does "word" start at p, followed by a literal lookahead? */
static bool
at_keyword(const char *p, const char *word)
{
	int			len = strlen(word);

	return strncmp(p, word, len) == 0 && is_literal_lookahead(p[len]);
}

/*
 * lex reads one token inside a mustache, skipping whitespace before it,
 * and advances P->p past it.
 */
static void
lex(Parser *P, Token *t)
{
	const char *p = P->p;
	const char *q;

	while (is_space(*p))
		p++;
	t->start = p;
	t->strip = false;
	t->literal = false;
	t->text = NULL;
	t->kind = TK_INVALID;
	q = p + 1;

	if (*p == '\0')
	{
		t->kind = TK_EOF;
		q = p;
	}
	else if (p[0] == '}' && p[1] == '}' && p[2] == '}' && p[3] == '}')
		q = p + 4;				/* a raw block's close: unsupported */
	else if (p[0] == '}' && p[1] == '}' && p[2] == '}')
	{
		t->kind = TK_CLOSE_UNESCAPED;
		q = p + 3;
	}
	else if (p[0] == '}' && p[1] == '~' && p[2] == '}' && p[3] == '}')
	{
		t->kind = TK_CLOSE_UNESCAPED;
		t->strip = true;
		q = p + 4;
	}
	else if (p[0] == '~' && p[1] == '}' && p[2] == '}')
	{
		t->kind = TK_CLOSE;
		t->strip = true;
		q = p + 3;
	}
	else if (p[0] == '}' && p[1] == '}')
	{
		t->kind = TK_CLOSE;
		q = p + 2;
	}
	else if (*p == '(')
		t->kind = TK_OPEN_SEXPR;
	else if (*p == ')')
		t->kind = TK_CLOSE_SEXPR;
	else if (*p == '=')
		t->kind = TK_EQUALS;
	else if (*p == '@')
		t->kind = TK_DATA;
	else if (*p == '|')
		t->kind = TK_CLOSE_BP;
	else if (*p == '"' || *p == '\'')
	{
		const char *end = lex_string(p, &t->text);

		if (end != NULL)
		{
			t->kind = TK_STRING;
			q = end;
		}
		else
			q = p + strlen(p);
	}
	else if (*p == '[')
	{
		const char *end = lex_bracket(p, &t->text);

		if (end != NULL)
		{
			t->kind = TK_ID;
			t->literal = true;
			q = end;
		}
		else
			q = p + strlen(p);
	}
	else if (p[0] == '.' && p[1] == '.')
	{
		t->kind = TK_ID;
		t->text = pstrdup("..");
		q = p + 2;
	}
	else if (p[0] == '.' && is_id_lookahead(p[1]))
	{
		t->kind = TK_ID;
		t->text = pstrdup(".");
	}
	else if (*p == '.' || *p == '/')
		t->kind = TK_SEP;
	else
	{
		/* number? */
		q = p;
		if (*q == '-')
			q++;
		if (isdigit((unsigned char) *q))
		{
			while (isdigit((unsigned char) *q))
				q++;
			if (q[0] == '.' && isdigit((unsigned char) q[1]))
			{
				q++;
				while (isdigit((unsigned char) *q))
					q++;
			}
			if (is_literal_lookahead(*q))
			{
				t->kind = TK_NUMBER;
				t->text = pnstrdup(p, q - p);
				goto done;
			}
		}

		if (at_keyword(p, "true") || at_keyword(p, "false"))
		{
			t->kind = TK_BOOLEAN;
			q = p + (*p == 't' ? 4 : 5);
			t->text = pnstrdup(p, q - p);
		}
		else if (at_keyword(p, "null"))
		{
			t->kind = TK_NULL;
			q = p + 4;
		}
		else if (at_keyword(p, "undefined"))
		{
			t->kind = TK_UNDEFINED;
			q = p + 9;
		}
		else
		{
			/* "as |" opens block parameters */
			if (p[0] == 'a' && p[1] == 's' && is_space(p[2]))
			{
				q = p + 2;
				while (is_space(*q))
					q++;
				if (*q == '|')
				{
					t->kind = TK_OPEN_BP;
					q++;
					goto done;
				}
			}
			q = p;
			while (is_id_char(*q))
				q++;
			if (q > p && is_id_lookahead(*q))
			{
				t->kind = TK_ID;
				t->text = pnstrdup(p, q - p);
			}
			else if (q == p)
				q = p + 1;
		}
	}
done:
	t->end = q;
	P->p = q;
}

/* kind of the next token, without consuming it */
static TokKind
peek(Parser *P)
{
	const char *save = P->p;
	Token		t;

	lex(P, &t);
	P->p = save;
	return t.kind;
}

/*
 * lex_segment reads a path segment after a separator: like lex, except
 * that digits ("a.0") and keywords ("a.true") are names here.
 */
static void
lex_segment(Parser *P, Token *t)
{
	const char *p = P->p;
	const char *q;

	while (is_space(*p))
		p++;
	q = p;
	while (is_id_char(*q))
		q++;
	if (q > p && *p != '.' && is_id_lookahead(*q))
	{
		t->kind = TK_ID;
		t->start = p;
		t->end = q;
		t->strip = false;
		t->literal = false;
		t->text = pnstrdup(p, q - p);
		P->p = q;
		return;
	}
	lex(P, t);
}

/* ----------------------------------------------------------------
 * Parser
 * ----------------------------------------------------------------
 */

static TCall *parse_call(Parser *P, const char *at);
static bool parse_statements(Parser *P, TProgram *program, Terminator *term);

static TProgram *
new_program(int nbparams, char **bparams)
{
	TProgram   *program = palloc0(sizeof(TProgram));

	program->nbparams = nbparams;
	program->bparams = bparams;
	return program;
}

static void
add_content(TProgram *program, const char *text, int len)
{
	TNode	   *node;

	if (len <= 0)
		return;
	node = palloc0(sizeof(TNode));
	node->kind = TN_CONTENT;
	node->orig = node->val = text;
	node->origlen = node->vallen = len;
	program->body = lappend(program->body, node);
}

/*
 * parse_path_rest reads the rest of a path whose first segment is "first"
 * and folds "this", "." and ".." (Handlebars' preparePath).
 */
static TPath *
parse_path_rest(Parser *P, Token *first, bool data)
{
	TPath	   *path = palloc0(sizeof(TPath));
	List	   *segs = list_make1(first->text);
	List	   *literal = list_make1_int(first->literal);
	int			i;

	for (;;)
	{
		const char *save = P->p;
		Token		t;

		lex(P, &t);
		if (t.kind != TK_SEP)
		{
			P->p = save;
			break;
		}
		lex_segment(P, &t);
		if (t.kind != TK_ID)
		{
			if (t.kind == TK_INVALID)
				parse_fail_token(P, &t);
			else
				parse_fail(P, t.start, "expected a name after a path separator");
			return NULL;
		}
		segs = lappend(segs, t.text);
		literal = lappend_int(literal, t.literal);
	}

	path->data = data;
	path->original = psprintf("%s%.*s", data ? "@" : "",
							  (int) (P->p - first->start), first->start);
	path->parts = palloc(sizeof(char *) * list_length(segs));
	for (i = 0; i < list_length(segs); i++)
	{
		char	   *seg = list_nth(segs, i);
		bool		lit = list_nth_int(literal, i);

		if (!lit && (strcmp(seg, "..") == 0 || strcmp(seg, ".") == 0 ||
					 strcmp(seg, "this") == 0))
		{
			if (path->nparts > 0)
			{
				parse_fail(P, first->start, "invalid path \"%s\"", path->original);
				return NULL;
			}
			if (i == 0)
				path->scoped = true;
			if (strcmp(seg, "..") == 0)
				path->depth++;
		}
		else
			path->parts[path->nparts++] = seg;
	}
	return path;
}

/* a path made of the single (literal) segment "name" */
static TPath *
make_simple_path(const char *name)
{
	TPath	   *path = palloc0(sizeof(TPath));

	path->original = pstrdup(name);
	path->nparts = 1;
	path->parts = palloc(sizeof(char *));
	path->parts[0] = path->original;
	return path;
}

/* the literal of a TK_STRING/NUMBER/BOOLEAN/NULL/UNDEFINED token */
static TExpr *
make_literal(Token *t)
{
	TExpr	   *e = palloc0(sizeof(TExpr));

	e->kind = TE_LITERAL;
	switch (t->kind)
	{
		case TK_STRING:
			e->literal.type = jbvString;
			e->literal.val.string.val = t->text;
			e->literal.val.string.len = strlen(t->text);
			break;
		case TK_NUMBER:
			/* the lexer checked the syntax, so numeric_in cannot fail */
			e->literal.type = jbvNumeric;
			e->literal.val.numeric =
				DatumGetNumeric(DirectFunctionCall3(numeric_in,
													CStringGetDatum(t->text),
													ObjectIdGetDatum(InvalidOid),
													Int32GetDatum(-1)));
			break;
		case TK_BOOLEAN:
			e->literal.type = jbvBool;
			e->literal.val.boolean = (t->text[0] == 't');
			break;
		case TK_NULL:
			e->literal.type = jbvNull;
			break;
		default:
			e->undefined = true;
			break;
	}
	return e;
}

static bool
is_literal_token(TokKind kind)
{
	return kind == TK_STRING || kind == TK_NUMBER || kind == TK_BOOLEAN ||
		kind == TK_NULL || kind == TK_UNDEFINED;
}

/* text a literal stands for when it is used as a name ({{"a b"}}, {{1}}) */
static const char *
literal_name(Token *t)
{
	switch (t->kind)
	{
		case TK_NULL:
			return "null";
		case TK_UNDEFINED:
			return "undefined";
		default:
			return t->text;
	}
}

/* a subexpression "( name args... )"; the "(" is already read */
static TExpr *
parse_sexpr(Parser *P, Token *open)
{
	TExpr	   *e;
	TCall	   *call;
	Token		t;

	if (++P->nesting > TEMPLATE_MAX_NESTING)
	{
		parse_fail(P, open->start, "subexpressions are nested too deeply");
		return NULL;
	}
	call = parse_call(P, open->start);
	if (call == NULL)
		return NULL;
	lex(P, &t);
	if (t.kind != TK_CLOSE_SEXPR)
	{
		if (t.kind == TK_EOF || t.kind == TK_CLOSE || t.kind == TK_CLOSE_UNESCAPED)
			parse_fail(P, open->start, "unclosed \"(\"");
		else
			parse_fail_token(P, &t);
		return NULL;
	}
	P->nesting--;
	e = palloc0(sizeof(TExpr));
	e->kind = TE_SUBEXPR;
	e->call = call;
	return e;
}

/* an argument: a path, data path, literal or subexpression */
static TExpr *
parse_expr(Parser *P)
{
	Token		t;
	TExpr	   *e;

	lex(P, &t);
	if (t.kind == TK_OPEN_SEXPR)
		return parse_sexpr(P, &t);
	if (is_literal_token(t.kind))
		return make_literal(&t);
	if (t.kind == TK_ID || t.kind == TK_DATA)
	{
		bool		data = (t.kind == TK_DATA);

		if (data)
		{
			lex(P, &t);
			if (t.kind != TK_ID)
			{
				parse_fail(P, t.start, "expected a name after \"@\"");
				return NULL;
			}
		}
		e = palloc0(sizeof(TExpr));
		e->kind = TE_PATH;
		e->path = parse_path_rest(P, &t, data);
		return e->path ? e : NULL;
	}
	parse_fail_token(P, &t);
	return NULL;
}

static THelper
helper_by_name(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(helper_names); i++)
	{
		if (strcmp(helper_names[i].name, name) == 0)
			return helper_names[i].helper;
	}
	return H_NONE;
}

/*
 * parse_call reads "name args... key=value..." and stops before the token
 * that ends it ("}}", "}}}", ")" or "as |").  "at" is the "{{" or "(" that
 * opened it.
 */
static TCall *
parse_call(Parser *P, const char *at)
{
	TCall	   *call = palloc0(sizeof(TCall));
	List	   *params = NIL;
	List	   *hkeys = NIL;
	List	   *hvalues = NIL;
	Token		t;
	const char *name_start;
	int			i;

	source_position(P->src, at, &call->line, &call->column);

	/* the name */
	lex(P, &t);
	name_start = t.start;
	if (is_literal_token(t.kind))
		call->head = make_simple_path(literal_name(&t));
	else if (t.kind == TK_ID || t.kind == TK_DATA)
	{
		bool		data = (t.kind == TK_DATA);

		if (data)
		{
			lex(P, &t);
			if (t.kind != TK_ID)
			{
				parse_fail(P, t.start, "expected a name after \"@\"");
				return NULL;
			}
		}
		call->head = parse_path_rest(P, &t, data);
		if (call->head == NULL)
			return NULL;
	}
	else if (t.kind == TK_CLOSE || t.kind == TK_CLOSE_UNESCAPED)
	{
		parse_fail(P, at, "empty \"{{}}\"");
		return NULL;
	}
	else
	{
		parse_fail_token(P, &t);
		return NULL;
	}
	call->head_src = pnstrdup(name_start, P->p - name_start);
	call->simple = (!call->head->data && !call->head->scoped &&
					call->head->depth == 0 && call->head->nparts == 1);
	call->helper = call->simple ? helper_by_name(call->head->parts[0]) : H_NONE;

	/* arguments, then key=value pairs */
	for (;;)
	{
		const char *save = P->p;
		TokKind		kind = peek(P);
		TExpr	   *e;

		if (kind == TK_CLOSE || kind == TK_CLOSE_UNESCAPED ||
			kind == TK_CLOSE_SEXPR || kind == TK_OPEN_BP || kind == TK_EOF)
			break;
		if (kind == TK_ID)
		{
			Token		key;

			lex(P, &key);
			if (peek(P) == TK_EQUALS)
			{
				lex(P, &t);
				e = parse_expr(P);
				if (e == NULL)
					return NULL;
				hkeys = lappend(hkeys, key.text);
				hvalues = lappend(hvalues, e);
				continue;
			}
			P->p = save;
		}
		if (hkeys != NIL)
		{
			lex(P, &t);
			parse_fail(P, t.start, "expected key=value after a key=value argument");
			return NULL;
		}
		e = parse_expr(P);
		if (e == NULL)
			return NULL;
		params = lappend(params, e);
	}

	call->nparams = list_length(params);
	call->params = palloc(sizeof(TExpr *) * (call->nparams + 1));
	for (i = 0; i < call->nparams; i++)
		call->params[i] = list_nth(params, i);
	call->nhash = list_length(hkeys);
	call->hash_keys = palloc(sizeof(char *) * (call->nhash + 1));
	call->hash_values = palloc(sizeof(TExpr *) * (call->nhash + 1));
	for (i = 0; i < call->nhash; i++)
	{
		call->hash_keys[i] = list_nth(hkeys, i);
		call->hash_values[i] = list_nth(hvalues, i);
	}
	return call;
}

/* optional "as |a b|" */
static bool
parse_block_params(Parser *P, int *nbparams, char ***bparams)
{
	List	   *names = NIL;
	Token		t;
	int			i;

	*nbparams = 0;
	*bparams = NULL;
	if (peek(P) != TK_OPEN_BP)
		return true;
	lex(P, &t);
	for (;;)
	{
		lex(P, &t);
		if (t.kind == TK_CLOSE_BP && names != NIL)
			break;
		if (t.kind != TK_ID)
		{
			parse_fail(P, t.start, "expected a block parameter name");
			return false;
		}
		names = lappend(names, t.text);
	}
	*nbparams = list_length(names);
	*bparams = palloc(sizeof(char *) * *nbparams);
	for (i = 0; i < *nbparams; i++)
		(*bparams)[i] = list_nth(names, i);
	return true;
}

/* expect the "}}" (or "}}}") ending a tag opened at "at" */
static bool
expect_close(Parser *P, const char *at, TokKind want, bool *strip)
{
	Token		t;

	lex(P, &t);
	if (t.kind == want)
	{
		*strip = t.strip;
		return true;
	}
	if (t.kind == TK_EOF)
		parse_fail(P, at, "unclosed \"{{\"");
	else if (t.kind == TK_CLOSE || t.kind == TK_CLOSE_UNESCAPED)
		parse_fail(P, t.start, "\"%s\" closes a tag opened with \"%s\"",
				   t.kind == TK_CLOSE ? "}}" : "}}}",
				   t.kind == TK_CLOSE ? "{{{" : "{{");
	else
		parse_fail_token(P, &t);
	return false;
}

/*
 * scan_open classifies the tag whose "{{" is at "m" and moves P->p past its
 * opener.  Comments and "{{else}}" are consumed whole.
 */
static OpenKind
scan_open(Parser *P, const char *m, TStrip *strip)
{
	const char *q = m + 2;
	const char *r;

	strip->open = strip->close = false;
	if (q[0] == '{' && q[1] == '{')
	{
		parse_fail(P, m, "raw blocks (\"{{{{\") are not supported");
		return OK_EOF;
	}
	if (*q == '~')
	{
		strip->open = true;
		q++;
	}
	switch (*q)
	{
		case '>':
			parse_fail(P, m, "partials (\"{{>\") are not supported");
			return OK_EOF;
		case '*':
			parse_fail(P, m, "decorators (\"{{*\") are not supported");
			return OK_EOF;
		case '#':
			if (q[1] == '>')
			{
				parse_fail(P, m, "partial blocks (\"{{#>\") are not supported");
				return OK_EOF;
			}
			if (q[1] == '*')
			{
				parse_fail(P, m, "decorators (\"{{#*\") are not supported");
				return OK_EOF;
			}
			P->p = q + 1;
			return OK_BLOCK;
		case '/':
			P->p = q + 1;
			return OK_END;
		case '^':
			r = q + 1;
			while (is_space(*r))
				r++;
			if (r[0] == '~' && r[1] == '}' && r[2] == '}')
			{
				strip->close = true;
				P->p = r + 3;
				return OK_ELSE;
			}
			if (r[0] == '}' && r[1] == '}')
			{
				P->p = r + 2;
				return OK_ELSE;
			}
			P->p = q + 1;
			return OK_INVERSE_BLOCK;
		case '{':
			P->p = q + 1;
			return OK_UNESCAPED;
		case '&':
			P->p = q + 1;
			return OK_AMP;
		case '!':
			if (q[1] == '-' && q[2] == '-')
			{
				for (r = strstr(q + 3, "--"); r != NULL; r = strstr(r + 1, "--"))
				{
					if (r[2] == '}' && r[3] == '}')
					{
						P->p = r + 4;
						return OK_COMMENT;
					}
					if (r[2] == '~' && r[3] == '}' && r[4] == '}')
					{
						strip->close = true;
						P->p = r + 5;
						return OK_COMMENT;
					}
				}
				parse_fail(P, m, "unclosed comment \"{{!--\"");
				return OK_EOF;
			}
			r = strstr(q + 1, "}}");
			if (r == NULL)
			{
				parse_fail(P, m, "unclosed comment \"{{!\"");
				return OK_EOF;
			}
			strip->close = (r > q + 1 && r[-1] == '~');
			P->p = r + 2;
			return OK_COMMENT;
		default:
			break;
	}

	/* {{else}} and {{else name ...}} */
	r = q;
	while (is_space(*r))
		r++;
	if (strncmp(r, "else", 4) == 0 &&
		(is_space(r[4]) || r[4] == '~' || r[4] == '}'))
	{
		const char *s = r + 4;

		while (is_space(*s))
			s++;
		if (s[0] == '~' && s[1] == '}' && s[2] == '}')
		{
			strip->close = true;
			P->p = s + 3;
			return OK_ELSE;
		}
		if (s[0] == '}' && s[1] == '}')
		{
			P->p = s + 2;
			return OK_ELSE;
		}
		P->p = r + 4;
		return OK_ELSE_CHAIN;
	}
	P->p = q;
	return OK_MUSTACHE;
}

/*
 * parse_close reads the rest of "{{/name}}" (P->p is after "{{/") and
 * checks that it closes the block named open_name.
 */
static bool
parse_close(Parser *P, TNode *block, Terminator *term,
			const char *open_name)
{
	const char *name_start;
	char	   *name;
	Token		t;

	lex(P, &t);
	name_start = t.start;
	if (t.kind == TK_DATA)
		lex(P, &t);
	if (t.kind == TK_ID)
	{
		if (parse_path_rest(P, &t, false) == NULL)
			return false;
	}
	else if (!is_literal_token(t.kind))
	{
		parse_fail_token(P, &t);
		return false;
	}
	name = pnstrdup(name_start, P->p - name_start);
	if (strcmp(name, open_name) != 0)
	{
		parse_fail(P, term->at, "\"{{/%s}}\" does not match \"{{#%s}}\"",
				   name, open_name);
		return false;
	}
	block->close_strip.open = term->strip.open;
	return expect_close(P, term->at, TK_CLOSE, &block->close_strip.close);
}

/*
 * finish_block parses what follows a block's first program (ended by
 * "term"): an optional {{else}} part or {{else name}} chain, and the close
 * tag.  open_name and open_at are those of the outermost block of a chain.
 */
static bool
finish_block(Parser *P, TNode *block, TProgram *program, Terminator *term,
			 bool inverted, const char *open_name, const char *open_at)
{
	TProgram   *inverse = NULL;
	Terminator	t2;

	switch (term->kind)
	{
		case OK_EOF:
			parse_fail(P, open_at, "unclosed block \"{{#%s}}\"", open_name);
			return false;

		case OK_ELSE:
			block->inverse_strip = term->strip;
			inverse = new_program(0, NULL);
			if (!parse_statements(P, inverse, &t2))
				return false;
			if (t2.kind == OK_EOF)
			{
				parse_fail(P, open_at, "unclosed block \"{{#%s}}\"", open_name);
				return false;
			}
			if (t2.kind != OK_END)
			{
				parse_fail(P, t2.at, "unexpected \"{{else}}\" after \"{{else}}\"");
				return false;
			}
			if (!parse_close(P, block, &t2, open_name))
				return false;
			break;

		case OK_ELSE_CHAIN:
			{
				TNode	   *child = palloc0(sizeof(TNode));
				TProgram   *cprogram;
				int			nbparams;
				char	  **bparams;

				child->kind = TN_BLOCK;
				child->open_strip.open = term->strip.open;
				block->inverse_strip.open = term->strip.open;
				child->call = parse_call(P, term->at);
				if (child->call == NULL)
					return false;
				if (!parse_block_params(P, &nbparams, &bparams))
					return false;
				if (!expect_close(P, term->at, TK_CLOSE, &child->open_strip.close))
					return false;
				block->inverse_strip.close = child->open_strip.close;
				cprogram = new_program(nbparams, bparams);
				if (!parse_statements(P, cprogram, &t2))
					return false;
				if (!finish_block(P, child, cprogram, &t2, false, open_name, open_at))
					return false;
				block->close_strip = child->close_strip;
				inverse = new_program(0, NULL);
				inverse->chained = true;
				inverse->body = list_make1(child);
			}
			break;

		case OK_END:
			if (!parse_close(P, block, term, open_name))
				return false;
			break;

		default:
			elog(ERROR, "unexpected template terminator %d", (int) term->kind);
	}

	if (inverted)
	{
		block->program = inverse;
		block->inverse = program;
	}
	else
	{
		block->program = program;
		block->inverse = inverse;
	}
	return true;
}

/* a block "{{#name ...}}" or "{{^name ...}}" whose opener is at "at" */
static TNode *
parse_block(Parser *P, const char *at, bool inverted, bool strip_open)
{
	TNode	   *block = palloc0(sizeof(TNode));
	TProgram   *program;
	Terminator	term;
	int			nbparams;
	char	  **bparams;

	if (++P->nesting > TEMPLATE_MAX_NESTING)
	{
		parse_fail(P, at, "blocks are nested too deeply");
		return NULL;
	}
	block->kind = TN_BLOCK;
	block->open_strip.open = strip_open;
	block->call = parse_call(P, at);
	if (block->call == NULL)
		return NULL;
	if (!parse_block_params(P, &nbparams, &bparams))
		return NULL;
	if (!expect_close(P, at, TK_CLOSE, &block->open_strip.close))
		return NULL;
	program = new_program(nbparams, bparams);
	if (!parse_statements(P, program, &term))
		return NULL;
	if (!finish_block(P, block, program, &term, inverted,
					  block->call->head_src, at))
		return NULL;
	P->nesting--;
	return block;
}

/*
 * parse_statements appends content, mustaches, comments and blocks to
 * "program" until the end of the template or a tag that ends the program
 * ({{/x}}, {{else}}, {{else x}}), which it describes in *term.  Returns
 * false on a syntax error.
 */
static bool
parse_statements(Parser *P, TProgram *program, Terminator *term)
{
	for (;;)
	{
		const char *start = P->p;
		const char *m = strstr(start, "{{");
		TStrip		strip;
		OpenKind	kind;
		TNode	   *node;

		if (P->error)
			return false;
		if (m == NULL)
		{
			int			len = strlen(start);

			add_content(program, start, len);
			P->p = start + len;
			term->kind = OK_EOF;
			term->at = P->p;
			return true;
		}

		/* "\{{" is a literal "{{", "\\{{" a backslash and a tag */
		if (m > start && m[-1] == '\\')
		{
			add_content(program, start, m - 1 - start);
			if (!(m - 1 > start && m[-2] == '\\'))
			{
				const char *next = strstr(m + 2, "{{");
				const char *stop;

				if (next == NULL)
					stop = m + strlen(m);
				else
				{
					stop = next;
					if (stop - 1 >= m + 2 && stop[-1] == '\\')
					{
						stop--;
						if (stop - 1 >= m + 2 && stop[-1] == '\\')
							stop--;
					}
				}
				add_content(program, m, stop - m);
				P->p = stop;
				continue;
			}
		}
		else
			add_content(program, start, m - start);

		kind = scan_open(P, m, &strip);
		if (P->error)
			return false;
		switch (kind)
		{
			case OK_COMMENT:
				node = palloc0(sizeof(TNode));
				node->kind = TN_COMMENT;
				node->strip = strip;
				program->body = lappend(program->body, node);
				break;

			case OK_MUSTACHE:
			case OK_AMP:
			case OK_UNESCAPED:
				node = palloc0(sizeof(TNode));
				node->kind = TN_MUSTACHE;
				node->strip.open = strip.open;
				node->call = parse_call(P, m);
				if (node->call == NULL)
					return false;
				if (!expect_close(P, m,
								  kind == OK_UNESCAPED ? TK_CLOSE_UNESCAPED : TK_CLOSE,
								  &node->strip.close))
					return false;
				program->body = lappend(program->body, node);
				break;

			case OK_BLOCK:
			case OK_INVERSE_BLOCK:
				node = parse_block(P, m, kind == OK_INVERSE_BLOCK, strip.open);
				if (node == NULL)
					return false;
				program->body = lappend(program->body, node);
				break;

			case OK_END:
			case OK_ELSE:
			case OK_ELSE_CHAIN:
				term->kind = kind;
				term->at = m;
				term->strip = strip;
				return true;

			case OK_EOF:
				return false;
		}
	}
}

/* ----------------------------------------------------------------
 * Whitespace control (Handlebars' WhitespaceControl visitor)
 *
 * "~" trims all whitespace on its side.  A block tag, {{else}} or comment
 * alone on its line ("standalone") is removed together with its line's
 * indentation and line break.
 * ----------------------------------------------------------------
 */

typedef struct StripInfo
{
	bool		open;
	bool		close;
	bool		open_standalone;
	bool		close_standalone;
	bool		inline_standalone;
} StripInfo;

static TNode *
body_at(List *body, int i)
{
	if (i < 0 || i >= list_length(body))
		return NULL;
	return (TNode *) list_nth(body, i);
}

/* does the whitespace run at the end (or start) of text contain a newline? */
static bool
trailing_ws_has_newline(const char *s, int len, bool or_all_ws)
{
	int			i = len;

	while (i > 0 && is_space(s[i - 1]))
	{
		if (s[i - 1] == '\n')
			return true;
		i--;
	}
	return or_all_ws && i == 0;
}

static bool
leading_ws_has_newline(const char *s, int len, bool or_all_ws)
{
	int			i = 0;

	while (i < len && is_space(s[i]))
	{
		if (s[i] == '\n')
			return true;
		i++;
	}
	return or_all_ws && i == len;
}

/* is the statement before body[i] (i may be the length) the end of a line? */
static bool
is_prev_whitespace(List *body, int i, bool is_root)
{
	TNode	   *prev = body_at(body, i - 1);
	bool		sibling = body_at(body, i - 2) != NULL;

	if (prev == NULL)
		return is_root;
	if (prev->kind != TN_CONTENT)
		return false;
	return trailing_ws_has_newline(prev->orig, prev->origlen,
								   !sibling && is_root);
}

/* is the statement after body[i] (i may be -1) the rest of a line? */
static bool
is_next_whitespace(List *body, int i, bool is_root)
{
	TNode	   *next = body_at(body, i + 1);
	bool		sibling = body_at(body, i + 2) != NULL;

	if (next == NULL)
		return is_root;
	if (next->kind != TN_CONTENT)
		return false;
	return leading_ws_has_newline(next->orig, next->origlen,
								  !sibling && is_root);
}

/* trim the start of the content after body[i]: all whitespace, or one line */
static void
omit_right(List *body, int i, bool multiple)
{
	TNode	   *cur = body_at(body, i + 1);
	int			n = 0;

	if (cur == NULL || cur->kind != TN_CONTENT || (!multiple && cur->rstripped))
		return;
	if (multiple)
	{
		while (n < cur->vallen && is_space(cur->val[n]))
			n++;
	}
	else
	{
		while (n < cur->vallen && (cur->val[n] == ' ' || cur->val[n] == '\t'))
			n++;
		if (n < cur->vallen && cur->val[n] == '\r')
			n++;
		if (n < cur->vallen && cur->val[n] == '\n')
			n++;
	}
	cur->val += n;
	cur->vallen -= n;
	cur->rstripped = (n > 0);
}

/* trim the end of the content before body[i]: all whitespace, or blanks */
static bool
omit_left(List *body, int i, bool multiple)
{
	TNode	   *cur = body_at(body, i - 1);
	int			n = 0;

	if (cur == NULL || cur->kind != TN_CONTENT || (!multiple && cur->lstripped))
		return false;
	while (n < cur->vallen)
	{
		char		c = cur->val[cur->vallen - 1 - n];

		if (multiple ? !is_space(c) : (c != ' ' && c != '\t'))
			break;
		n++;
	}
	cur->vallen -= n;
	cur->lstripped = (n > 0);
	return cur->lstripped;
}

static void ws_program(TProgram *program, bool is_root);

static void
ws_block(TNode *block, StripInfo *s)
{
	TProgram   *program;
	TProgram   *inverse;
	TProgram   *first_inverse;
	TProgram   *last_inverse;

	if (block->program)
		ws_program(block->program, false);
	if (block->inverse)
		ws_program(block->inverse, false);

	program = block->program ? block->program : block->inverse;
	inverse = (block->program && block->inverse) ? block->inverse : NULL;
	first_inverse = last_inverse = inverse;
	if (inverse && inverse->chained)
	{
		TNode	   *child = linitial(inverse->body);

		first_inverse = child->program;
		while (last_inverse->chained)
		{
			child = llast(last_inverse->body);
			last_inverse = child->inverse ? child->inverse : child->program;
		}
	}

	memset(s, 0, sizeof(StripInfo));
	s->open = block->open_strip.open;
	s->close = block->close_strip.close;
	if (program == NULL)
		return;
	s->open_standalone = is_next_whitespace(program->body, -1, false);
	s->close_standalone =
		is_prev_whitespace((first_inverse ? first_inverse : program)->body,
						   list_length((first_inverse ? first_inverse : program)->body),
						   false);

	if (block->open_strip.close)
		omit_right(program->body, -1, true);

	if (inverse)
	{
		if (block->inverse_strip.open)
			omit_left(program->body, list_length(program->body), true);
		if (block->inverse_strip.close && first_inverse)
			omit_right(first_inverse->body, -1, true);
		if (block->close_strip.open && last_inverse)
			omit_left(last_inverse->body, list_length(last_inverse->body), true);
		if (first_inverse &&
			is_prev_whitespace(program->body, list_length(program->body), false) &&
			is_next_whitespace(first_inverse->body, -1, false))
		{
			omit_left(program->body, list_length(program->body), false);
			omit_right(first_inverse->body, -1, false);
		}
	}
	else if (block->close_strip.open)
		omit_left(program->body, list_length(program->body), true);
}

static void
ws_program(TProgram *program, bool is_root)
{
	List	   *body = program->body;
	int			i;

	for (i = 0; i < list_length(body); i++)
	{
		TNode	   *cur = list_nth(body, i);
		StripInfo	s;
		bool		prev_ws;
		bool		next_ws;

		memset(&s, 0, sizeof(s));
		switch (cur->kind)
		{
			case TN_CONTENT:
				continue;
			case TN_MUSTACHE:
				s.open = cur->strip.open;
				s.close = cur->strip.close;
				break;
			case TN_COMMENT:
				s.open = cur->strip.open;
				s.close = cur->strip.close;
				s.inline_standalone = true;
				break;
			case TN_BLOCK:
				ws_block(cur, &s);
				break;
		}

		prev_ws = is_prev_whitespace(body, i, is_root);
		next_ws = is_next_whitespace(body, i, is_root);

		if (s.close)
			omit_right(body, i, true);
		if (s.open)
			omit_left(body, i, true);
		if (s.inline_standalone && prev_ws && next_ws)
		{
			omit_right(body, i, false);
			omit_left(body, i, false);
		}
		if (s.open_standalone && prev_ws)
		{
			TProgram   *p = cur->program ? cur->program : cur->inverse;

			omit_right(p->body, -1, false);
			omit_left(body, i, false);
		}
		if (s.close_standalone && next_ws)
		{
			TProgram   *p = cur->inverse ? cur->inverse : cur->program;

			omit_right(body, i, false);
			omit_left(p->body, list_length(p->body), false);
		}
	}
}

/*
 * parse_template parses "src" into a tree allocated in CurrentMemoryContext
 * (which points into src).  Returns NULL with *errmsg on a syntax error;
 * never throws except on out-of-memory.
 */
static TProgram *
parse_template(const char *src, char **errmsg)
{
	Parser		P;
	TProgram   *program = new_program(0, NULL);
	Terminator	term;

	P.src = src;
	P.p = src;
	P.nesting = 0;
	P.error = NULL;

	if (parse_statements(&P, program, &term))
	{
		if (term.kind == OK_END)
		{
			const char *name = P.p;
			int			len = 0;

			while (is_space(*name))
				name++;
			while (name[len] && is_id_char(name[len]))
				len++;
			parse_fail(&P, term.at, "\"{{/%.*s}}\" closes no open block",
					   len, name);
		}
		else if (term.kind == OK_ELSE || term.kind == OK_ELSE_CHAIN)
			parse_fail(&P, term.at, "\"{{else}}\" outside of a block");
	}
	if (P.error != NULL)
	{
		if (errmsg)
			*errmsg = P.error;
		return NULL;
	}
	ws_program(program, true);
	return program;
}

/* ----------------------------------------------------------------
 * Values
 *
 * While rendering, a value is a JsonbValue *: a scalar, or jbvBinary
 * pointing into a container (never copied); NULL is "undefined" (absent).
 * ----------------------------------------------------------------
 */

static JsonbValue *
string_value(const char *s, int len)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = len;
	return v;
}

static JsonbValue *
int_value(int64 i)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvNumeric;
	v->val.numeric = int64_to_numeric(i);
	return v;
}

static JsonbValue *
bool_value(bool b)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvBool;
	v->val.boolean = b;
	return v;
}

/* the value of a whole jsonb document (NULL for NULL) */
static JsonbValue *
jsonb_value(Jsonb *jb)
{
	JsonbValue *v;

	if (jb == NULL)
		return NULL;
	v = palloc(sizeof(JsonbValue));
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	return v;
}

static bool
value_is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary &&
		JsonContainerIsArray(v->val.binary.data) &&
		!JsonContainerIsScalar(v->val.binary.data);
}

static bool
value_is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary &&
		JsonContainerIsObject(v->val.binary.data);
}

static bool
numeric_is_zero(Numeric n)
{
	return !numeric_is_nan(n) &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(0)))) == 0;
}

/*
 * JavaScript's "!v": undefined, null, false, 0, "" are falsy.  Handlebars'
 * #if also treats [] as false (Utils.isEmpty); {} is true.
 */
static bool
value_truthy(JsonbValue *v, bool include_zero)
{
	if (v == NULL)
		return false;
	switch (v->type)
	{
		case jbvNull:
			return false;
		case jbvBool:
			return v->val.boolean;
		case jbvString:
			return v->val.string.len > 0;
		case jbvNumeric:
			return include_zero || !numeric_is_zero(v->val.numeric);
		case jbvBinary:
			return !value_is_array(v) || JsonContainerSize(v->val.binary.data) > 0;
		default:
			return true;
	}
}

/* Handlebars' Utils.isEmpty: falsy but not 0, or an empty array */
static bool
value_is_empty(JsonbValue *v)
{
	if (v != NULL && v->type == jbvNumeric)
		return false;
	return !value_truthy(v, false);
}

/* append the display text of v (allma_jsonb_to_display_text's rules) */
static void
append_display(StringInfo out, JsonbValue *v)
{
	if (v == NULL)
		return;
	switch (v->type)
	{
		case jbvNull:
			break;
		case jbvString:
			appendBinaryStringInfo(out, v->val.string.val, v->val.string.len);
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(out,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvBinary:
			(void) JsonbToCString(out, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

static char *
display_text(JsonbValue *v, int *len)
{
	StringInfoData buf;

	if (v != NULL && v->type == jbvString)
	{
		*len = v->val.string.len;
		return v->val.string.val;
	}
	initStringInfo(&buf);
	append_display(&buf, v);
	*len = buf.len;
	return buf.data;
}

static void
append_json_string(StringInfo out, const char *s, int len)
{
	char	   *copy = pnstrdup(s, len);

	escape_json(out, copy);
	pfree(copy);
}

static void
append_compact_scalar(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			append_json_string(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		default:
			append_display(out, v);
			break;
	}
}

/* compact JSON text of v, as JavaScript's JSON.stringify writes it */
static void
append_compact_json(StringInfo out, JsonbValue *v)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	elem;
	bool		first = true;

	if (v->type != jbvBinary)
	{
		append_compact_scalar(out, v);
		return;
	}
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				if (!first)
					appendStringInfoChar(out, ',');
				appendStringInfoChar(out, tok == WJB_BEGIN_ARRAY ? '[' : '{');
				first = true;
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				appendStringInfoChar(out, tok == WJB_END_ARRAY ? ']' : '}');
				first = false;
				break;
			case WJB_KEY:
				if (!first)
					appendStringInfoChar(out, ',');
				append_json_string(out, elem.val.string.val, elem.val.string.len);
				appendStringInfoChar(out, ':');
				first = true;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					appendStringInfoChar(out, ',');
				append_compact_scalar(out, &elem);
				first = false;
				break;
			default:
				break;
		}
	}
}

/* JavaScript's ToNumber, for the comparisons and slice's indexes */
static double
js_to_number(JsonbValue *v)
{
	char	   *s;
	char	   *end;
	double		d;
	int			len;

	if (v == NULL)
		return get_float8_nan();
	switch (v->type)
	{
		case jbvNull:
			return 0;
		case jbvBool:
			return v->val.boolean ? 1 : 0;
		case jbvNumeric:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
													  NumericGetDatum(v->val.numeric)));
		case jbvString:
			s = v->val.string.val;
			len = v->val.string.len;
			while (len > 0 && is_space(*s))
			{
				s++;
				len--;
			}
			while (len > 0 && is_space(s[len - 1]))
				len--;
			if (len == 0)
				return 0;
			s = pnstrdup(s, len);
			if (strcmp(s, "Infinity") == 0 || strcmp(s, "+Infinity") == 0)
				return get_float8_infinity();
			if (strcmp(s, "-Infinity") == 0)
				return -get_float8_infinity();
			if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
			{
				if (strspn(s + 2, "0123456789abcdefABCDEF") != len - 2)
					return get_float8_nan();
				return (double) strtoull(s + 2, NULL, 16);
			}
			if (strspn(s, "0123456789+-.eE") != len)
				return get_float8_nan();
			d = strtod(s, &end);
			if (*end != '\0')
				return get_float8_nan();
			return d;
		default:
			/* objects and arrays: approximated as NaN */
			return get_float8_nan();
	}
}

/* JavaScript's ToIntegerOrInfinity, clamped to int */
static int
js_to_int(JsonbValue *v)
{
	double		d = js_to_number(v);

	if (isnan(d))
		return 0;
	d = trunc(d);
	if (d > PG_INT32_MAX)
		return PG_INT32_MAX;
	if (d < PG_INT32_MIN)
		return PG_INT32_MIN;
	return (int) d;
}

/* JavaScript's "===", except that objects and arrays compare by value */
static bool
strict_equals(JsonbValue *a, JsonbValue *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(a->val.numeric),
													 NumericGetDatum(b->val.numeric))) == 0;
		case jbvBinary:
			return value_is_array(a) == value_is_array(b) &&
				compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			return false;
	}
}

/* JavaScript's "a > b" (greater) or "a < b" */
static bool
js_compare(JsonbValue *a, JsonbValue *b, bool greater)
{
	int			cmp;
	double		x;
	double		y;

	if (a && b && a->type == jbvString && b->type == jbvString)
	{
		int			n = Min(a->val.string.len, b->val.string.len);

		cmp = memcmp(a->val.string.val, b->val.string.val, n);
		if (cmp == 0)
			cmp = (a->val.string.len > b->val.string.len) -
				(a->val.string.len < b->val.string.len);
		return greater ? cmp > 0 : cmp < 0;
	}
	if (a && b && a->type == jbvNumeric && b->type == jbvNumeric)
	{
		cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp,
												NumericGetDatum(a->val.numeric),
												NumericGetDatum(b->val.numeric)));
		return greater ? cmp > 0 : cmp < 0;
	}
	x = js_to_number(a);
	y = js_to_number(b);
	if (isnan(x) || isnan(y))
		return false;
	return greater ? x > y : x < y;
}

/*
 * property_of is Handlebars' lookupProperty: an object's key, an array's
 * index or "length", a string's "length".  NULL when there is none.
 */
static JsonbValue *
property_of(JsonbValue *v, const char *name)
{
	JsonbContainer *jc;

	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
	{
		if (strcmp(name, "length") == 0)
			return int_value(pg_mbstrlen_with_len(v->val.string.val,
												  v->val.string.len));
		return NULL;
	}
	if (v->type != jbvBinary)
		return NULL;
	jc = v->val.binary.data;
	if (JsonContainerIsObject(jc))
		return getKeyJsonValueFromContainer(jc, name, strlen(name), NULL);
	if (value_is_array(v))
	{
		const char *c;
		long		index;

		if (strcmp(name, "length") == 0)
			return int_value(JsonContainerSize(jc));
		/* a canonical array index: "0", "1", ... but not "01" */
		if (name[0] == '\0' || (name[0] == '0' && name[1] != '\0') ||
			strlen(name) > 9)
			return NULL;
		for (c = name; *c; c++)
			if (!isdigit((unsigned char) *c))
				return NULL;
		index = atol(name);
		if (index >= JsonContainerSize(jc))
			return NULL;
		return getIthJsonbValueFromContainer(jc, (uint32) index);
	}
	return NULL;
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

typedef struct Renderer
{
	StringInfo	out;
	JsonbValue *root;
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
			v = int_value(d->index);
		else if (strcmp(name, "key") == 0)
			v = d->key ? string_value(d->key, d->keylen) : int_value(d->index);
		else if (strcmp(name, "first") == 0)
			v = bool_value(d->first);
		else if (strcmp(name, "last") == 0)
			v = bool_value(d->last);
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
		v = property_of(v, path->parts[i]);
	return v;
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

/* Allma's "slice": Array.prototype.slice, and String.prototype.slice */
static JsonbValue *
helper_slice(JsonbValue *v, JsonbValue *startv, JsonbValue *endv)
{
	int			len;
	int			start;
	int			end;

	if (v != NULL && v->type == jbvString)
		len = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);
	else if (value_is_array(v))
		len = JsonContainerSize(v->val.binary.data);
	else
		len = 0;

	start = js_to_int(startv);
	end = endv ? js_to_int(endv) : len;
	start = start < 0 ? Max(len + start, 0) : Min(start, len);
	end = end < 0 ? Max(len + end, 0) : Min(end, len);
	if (end < start)
		end = start;

	if (v != NULL && v->type == jbvString)
	{
		const char *s = v->val.string.val;
		const char *from;
		int			i;

		for (i = 0; i < start; i++)
			s += pg_mblen(s);
		from = s;
		for (; i < end; i++)
			s += pg_mblen(s);
		return string_value(from, s - from);
	}
	else
	{
		JsonbParseState *state = NULL;
		JsonbValue *res;

		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		if (value_is_array(v) && start < end)
		{
			JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
			JsonbIteratorToken tok;
			JsonbValue	elem;
			int			i = 0;

			while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			{
				if (tok != WJB_ELEM)
					continue;
				if (i >= start && i < end)
					pushJsonbValue(&state, WJB_ELEM, &elem);
				i++;
			}
		}
		res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
		return jsonb_value(JsonbValueToJsonb(res));
	}
}

/* Allma's "base64": Buffer.from(str || '').toString('base64') */
static JsonbValue *
helper_base64(JsonbValue *v)
{
	char	   *text;
	int			len;
	char	   *encoded;
	int			enclen;

	if (!value_truthy(v, false) && !value_is_array(v))
		return string_value("", 0);
	text = display_text(v, &len);
	enclen = pg_b64_enc_len(len);
	encoded = palloc(enclen + 1);
	enclen = allma_b64_encode(text, len, encoded, enclen);
	if (enclen < 0)
		elog(ERROR, "could not encode a template value in base64");
	encoded[enclen] = '\0';
	return string_value(encoded, enclen);
}

/* Allma's "json": "null" for null/absent, strings as they are, else JSON */
static JsonbValue *
helper_json(JsonbValue *v)
{
	StringInfoData buf;

	if (v == NULL || v->type == jbvNull)
		return string_value("null", 4);
	if (v->type == jbvString)
		return v;
	initStringInfo(&buf);
	append_compact_json(&buf, v);
	return string_value(buf.data, buf.len);
}

/* Handlebars' "lookup obj field" */
static JsonbValue *
helper_lookup(JsonbValue *obj, JsonbValue *field)
{
	char	   *name;
	int			len;

	if (!value_truthy(obj, false) && !value_is_array(obj))
		return obj;
	if (field == NULL)
		name = "undefined";
	else if (field->type == jbvNull)
		name = "null";
	else
	{
		name = display_text(field, &len);
		name = pnstrdup(name, len);
	}
	return property_of(obj, name);
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
			return helper_lookup(arg(R, env, call, 0), arg(R, env, call, 1));
		case H_LOG:
			return NULL;
		case H_JSON:
			return helper_json(arg(R, env, call, 0));
		case H_SLICE:
			return helper_slice(arg(R, env, call, 0), arg(R, env, call, 1),
								arg(R, env, call, 2));
		case H_EQ:
		case H_NEQ:
			a = arg(R, env, call, 0);
			b = arg(R, env, call, 1);
			return bool_value(strict_equals(a, b) == (call->helper == H_EQ));
		case H_GT:
		case H_LT:
			a = arg(R, env, call, 0);
			b = arg(R, env, call, 1);
			return bool_value(js_compare(a, b, call->helper == H_GT));
		case H_DEFAULT:
			a = arg(R, env, call, 0);
			if (a != NULL && a->type != jbvNull)
				return a;
			return arg(R, env, call, 1);
		case H_BASE64:
			return helper_base64(arg(R, env, call, 0));
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

	if (!value_is_array(v) && !value_is_object(v))
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
	object = value_is_object(v);
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
			bpvalues[1] = object ? string_value(key.val.string.val,
												key.val.string.len)
				: int_value(i);
		render_program(R, env, block->program, true, elem, &data, bpvalues, 2);
		i++;
	}
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
	else if (value_is_array(v))
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
			cond = value_truthy(v, value_truthy(hash_arg(R, env, call, "includeZero"),
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
			if (value_is_empty(v))
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
				if (value_truthy(self, false) || value_is_array(self))
					result = jsonb_value(allma_path_get(JsonbValueToJsonb(self), path));
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
			append_display(R->out, call_helper(R, env, call));
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
				appendBinaryStringInfo(R->out, node->val, node->vallen);
				break;
			case TN_COMMENT:
				break;
			case TN_MUSTACHE:
				append_display(R->out, eval_call(R, &env, node->call, false));
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
render_tree(TProgram *program, Jsonb *ctx)
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
	R.root = jsonb_value(ctx);
	root.value = R.root;
	root.parent = NULL;
	env.ctx = &root;
	env.data = data;
	env.bp = NULL;
	render_program(&R, &env, program, false, NULL, NULL, NULL, 0);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
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
 * with_json_path throws ERRCODE_ALLMA_INVALID_PATH.
 */
char *
allma_template_render(const char *tmpl, Jsonb *ctx)
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
	return render_tree(program, ctx);
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
render_string(const char *s, int len, Jsonb *ctx, int depth)
{
	char	   *str = pnstrdup(s, len);
	char	   *msg = NULL;
	JsonbValue *found;

	if (has_markup_len(str, len))
	{
		str = allma_template_render(str, ctx);
		len = strlen(str);
	}
	if (!is_whole_jsonpath(str, len) || !allma_path_check(str, &msg))
		return string_value(str, len);

	found = jsonb_value(allma_path_get(ctx, str));
	if (found != NULL && found->type == jbvString &&
		depth < RENDER_VALUE_MAX_DEPTH &&
		!(found->val.string.len == len &&
		  memcmp(found->val.string.val, str, len) == 0))
		return render_string(found->val.string.val, found->val.string.len,
							 ctx, depth + 1);
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
Jsonb *
allma_template_render_value(Jsonb *value, Jsonb *ctx)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbValue	key;
	bool		have_key = false;
	bool		needed = false;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext tmpcxt;
	Jsonb	   *result;

	if (value == NULL)
		return NULL;

	/* fast path: nothing to render */
	it = JsonbIteratorInit(&value->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && string_needs_render(&v))
		{
			needed = true;
			break;
		}
	}
	if (!needed)
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
		r = render_string(v.val.string.val, v.val.string.len, ctx, 0);
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
					r = render_string(v.val.string.val, v.val.string.len, ctx, 0);
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
					r = render_string(v.val.string.val, v.val.string.len, ctx, 0);
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
