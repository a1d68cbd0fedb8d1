/*-------------------------------------------------------------------------
 *
 * template_ws.c
 *	  Whitespace control of parsed templates, as Handlebars'
 *	  WhitespaceControl visitor does it.
 *
 * IDENTIFICATION
 *	  src/template_ws.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/pg_list.h"

#include "template_tree.h"

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

	while (i > 0 && template_is_space(s[i - 1]))
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

	while (i < len && template_is_space(s[i]))
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
		while (n < cur->vallen && template_is_space(cur->val[n]))
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

		if (multiple ? !template_is_space(c) : (c != ' ' && c != '\t'))
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

/* allma_tmpl_strip_whitespace: see template_tree.h */
void
allma_tmpl_strip_whitespace(TProgram *program)
{
	ws_program(program, true);
}
