/*-------------------------------------------------------------------------
 *
 * template_parse.c
 *	  The parser of "{{ }}" templates (the Handlebars subset Allma flows
 *	  use; the syntax is listed in template.c): a lexer of the text inside
 *	  "{{ }}" and a recursive-descent parser that turns a template into the
 *	  tree of template_tree.h once.
 *
 * The parser never throws for bad input: it records the first syntax error
 * with its line and column and unwinds.  Partials, decorators and raw
 * blocks are rejected as parse errors.  After a successful parse the
 * whitespace-control pass (template_ws.c) trims the tree.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/template_parse.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "template.h"
#include "template_tree.h"
#include "textutil.h"

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

/* characters Handlebars allows in an identifier */
static bool
is_id_char(char c)
{
	if ((unsigned char) c >= 0x80)
		return true;
	if (c == '\0' || template_is_space(c))
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
	return c == '\0' || template_is_space(c) || strchr("=~}/.)|", c) != NULL;
}

/* what may follow a number or keyword literal */
static bool
is_literal_lookahead(char c)
{
	return c == '\0' || template_is_space(c) || strchr("~})", c) != NULL;
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

	while (template_is_space(*p))
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
			if (p[0] == 'a' && p[1] == 's' && template_is_space(p[2]))
			{
				q = p + 2;
				while (template_is_space(*q))
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

	while (template_is_space(*p))
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

/*
 * parse_named_path reads the path that token t (an identifier, or "@")
 * starts: a data variable when t is "@".  NULL on error.
 */
static TPath *
parse_named_path(Parser *P, Token *t)
{
	bool		data = (t->kind == TK_DATA);

	if (data)
	{
		lex(P, t);
		if (t->kind != TK_ID)
		{
			parse_fail(P, t->start, "expected a name after \"@\"");
			return NULL;
		}
	}
	return parse_path_rest(P, t, data);
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
		e = palloc0(sizeof(TExpr));
		e->kind = TE_PATH;
		e->path = parse_named_path(P, &t);
		return e->path ? e : NULL;
	}
	parse_fail_token(P, &t);
	return NULL;
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
		call->head = parse_named_path(P, &t);
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
	call->helper = call->simple ? allma_tmpl_helper_by_name(call->head->parts[0]) : H_NONE;

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
 * scan_bare_close: when s, after spaces, ends the tag ("}}", or "~}}"
 * which also strips), moves the cursor past it and returns true
 */
static bool
scan_bare_close(Parser *P, const char *s, TStrip *strip)
{
	while (template_is_space(*s))
		s++;
	if (s[0] == '~' && s[1] == '}' && s[2] == '}')
	{
		strip->close = true;
		P->p = s + 3;
		return true;
	}
	if (s[0] == '}' && s[1] == '}')
	{
		P->p = s + 2;
		return true;
	}
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
			if (scan_bare_close(P, q + 1, strip))
				return OK_ELSE;
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
	while (template_is_space(*r))
		r++;
	if (strncmp(r, "else", 4) == 0 &&
		(template_is_space(r[4]) || r[4] == '~' || r[4] == '}'))
	{
		if (scan_bare_close(P, r + 4, strip))
			return OK_ELSE;
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
	/*
	 * Allma's with_json_path hands its result to the block only as a block
	 * parameter; without one the block cannot see it (and Handlebars
	 * renders the outer context instead).  Say so rather than render that.
	 */
	if (block->call->helper == H_WITH_JSON_PATH && nbparams == 0 && !inverted)
	{
		parse_fail(P, at, "{{#with_json_path}} needs a block parameter to receive its result: "
				   "{{#with_json_path \"$.path\" as |value|}}...{{value}}...{{/with_json_path}}");
		return NULL;
	}
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

/* allma_tmpl_parse: see template_tree.h */
TProgram *
allma_tmpl_parse(const char *src, char **errmsg)
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

			while (template_is_space(*name))
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
	allma_tmpl_strip_whitespace(program);
	return program;
}
