/*-------------------------------------------------------------------------
 *
 * json_output.c
 *	  Allma's jsonOutputMode: the JSON in an LLM's reply text.
 *
 * allma_llm_json_output finds the JSON in a reply: the whole text, else
 * the inside of the first ``` fence, else the text from the first "{" or
 * "[" to its matching bracket (or to the last closing bracket of that
 * kind).  Never throws for bad input.
 *
 * IDENTIFICATION
 *	  src/llm/json_output.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "llm.h"
#include "provider.h"

/*
 * matching_close scans from s[start] (an opening bracket) and returns the
 * index of the bracket that closes it, skipping JSON strings; -1 if none.
 */
static int
matching_close(const char *s, int len, int start)
{
	int			depth = 0;
	bool		in_string = false;
	int			i;

	for (i = start; i < len; i++)
	{
		char		ch = s[i];

		if (in_string)
		{
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
			continue;
		}
		if (ch == '"')
			in_string = true;
		else if (ch == '{' || ch == '[')
			depth++;
		else if (ch == '}' || ch == ']')
		{
			if (--depth == 0)
				return i;
		}
	}
	return -1;
}

/* try the text from the first "open" to its match, then to the last "close" */
static bool
try_bracketed(const char *s, int len, char open, char close, Jsonb **out)
{
	const char *first = memchr(s, open, len);
	int			start,
				end;

	if (first == NULL)
		return false;
	start = first - s;
	end = matching_close(s, len, start);
	if (end > start && allma_llm_parse_json_soft(s + start, end - start + 1, out))
		return true;
	for (end = len - 1; end > start; end--)
	{
		if (s[end] == close)
			return allma_llm_parse_json_soft(s + start, end - start + 1, out);
	}
	return false;
}

/* find JSON in s (len bytes); see allma_llm_json_output */
static bool
find_json(const char *s, int len, Jsonb **out)
{
	const char *obj,
			   *arr;

	/* trim */
	while (len > 0 && isspace((unsigned char) *s))
		s++, len--;
	while (len > 0 && isspace((unsigned char) s[len - 1]))
		len--;
	if (len == 0)
		return false;
	if (allma_llm_parse_json_soft(s, len, out))
		return true;

	/* the first bracket that comes first wins; then the other kind */
	obj = memchr(s, '{', len);
	arr = memchr(s, '[', len);
	if (arr != NULL && (obj == NULL || arr < obj))
		return try_bracketed(s, len, '[', ']', out) ||
			try_bracketed(s, len, '{', '}', out);
	return try_bracketed(s, len, '{', '}', out) ||
		try_bracketed(s, len, '[', ']', out);
}

bool
allma_llm_json_output(const char *text, Jsonb **out, char **errmsg)
{
	const char *fence;
	int			len;
	Jsonb	   *value = NULL;
	bool		found = false;

	*out = NULL;
	*errmsg = NULL;
	if (text == NULL)
		text = "";
	len = strlen(text);

	/* a ``` fence (```json, ```JSON or bare) comes first */
	fence = strstr(text, "```");
	if (fence != NULL)
	{
		const char *start = fence + 3;
		const char *end;

		/* skip the info string up to the end of the line */
		while (*start && *start != '\n' && !isspace((unsigned char) *start))
			start++;
		end = strstr(start, "```");
		if (end == NULL)
			end = text + len;	/* unterminated: up to the end */
		found = find_json(start, end - start, &value);
	}
	if (!found)
		found = find_json(text, len, &value);
	if (!found)
	{
		*errmsg = psprintf("the LLM reply contains no valid JSON: %s",
						   allma_llm_truncate_text(text[0] ? text : "(empty)"));
		return false;
	}
	if (!allma_jsonb_is_object(value))
		value = allma_jsonb_set_key(NULL, "llm_response", value);
	*out = value;
	return true;
}
