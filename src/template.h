/*-------------------------------------------------------------------------
 *
 * template.h
 *	  "{{ }}" templates: the Handlebars subset and helpers Allma flows use.
 *
 * IDENTIFICATION
 *	  src/template.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_TEMPLATE_H
#define ALLMA_TEMPLATE_H

#include "allma.h"

/* true when the string contains "{{" */
extern bool allma_template_has_markup(const char *s);

/* true when "tmpl" parses; else false with *errmsg (palloc'd).  Never throws. */
extern bool allma_template_check(const char *tmpl, char **errmsg);

/*
 * renders "tmpl" against ctx; throws ERRCODE_ALLMA_INVALID_TEMPLATE on bad
 * syntax, ERRCODE_PROGRAM_LIMIT_EXCEEDED beyond allma.template_max_iterations
 * or allma.template_max_output
 */
extern char *allma_template_render(const char *tmpl, Jsonb *ctx);

/*
 * allma_template_render_value walks objects and arrays and renders every
 * string (Allma's renderNestedTemplates): after interpolation, a string that
 * is a whole "$.path" is replaced by the value at that path (any type).
 * Returns value itself when nothing needed rendering.
 */
extern Jsonb *allma_template_render_value(Jsonb *value, Jsonb *ctx);
extern bool allma_template_value_needs_render(Jsonb *value);

#endif							/* ALLMA_TEMPLATE_H */
