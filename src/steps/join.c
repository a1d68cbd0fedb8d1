/*-------------------------------------------------------------------------
 *
 * join.c
 *	  The system/join-data module of DATA_TRANSFORMATION steps: a hash
 *	  join of two tables given as JSON arrays or CSV text.
 *
 * Both sources become a JoinTable: named columns and rows of cells.  The
 * right table is hashed on its join key; each left row then probes the
 * hash table, so the join costs O(left + right + output).
 *
 * Keys compare by their display text, the way Allma (which joins the
 * key values' JavaScript string forms) does: a CSV "1" matches a JSON 1,
 * numbers compare without trailing fractional zeros (1.50 matches 1.5),
 * objects and arrays compare as JSON text.  A row whose key has a null or
 * missing part never matches (as in SQL); outer joins still output it.
 *
 * Output rows are objects whose columns are the left columns, then the left
 * join key names if not among them, then the selected right columns (all
 * right columns by default) except the right join key columns.  A matched
 * row takes the right row's value for a column both sides have, except the
 * join keys, which keep the left value.  Columns a row lacks are null.  An
 * unmatched right row (right and outer joins) gets its key values under the
 * left key names.
 *
 * IDENTIFICATION
 *	  src/steps/join.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "jsonb_util.h"
#include "transform.h"

/* largest number of rows system/join-data may produce */
#define ALLMA_JOIN_MAX_ROWS			1000000

typedef struct JoinTable
{
	const char *field;			/* "left_source" or "right_source" */
	int			nrows;
	int			ncols;
	char	  **colnames;		/* in first-seen order */
	HTAB	   *colmap;			/* column name -> index */
	JsonbValue **cells;			/* nrows * ncols; NULL where a row lacks a
								 * column */
} JoinTable;

/* entry of a name -> index map; the key is a pointer to a C string */
typedef struct NameEntry
{
	const char *name;
	int			index;
} NameEntry;

/* entry of the join hash table: the right rows with one key */
typedef struct KeyGroup
{
	const char *key;
	int			head;			/* first right row with this key */
	int			tail;			/* last one; rows chain through next_row[] */
} KeyGroup;

/* hash and compare functions for hash tables keyed by a C string pointer */
static uint32
cstring_ptr_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

static int
cstring_ptr_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

/* a hash table keyed by C string pointers, in CurrentMemoryContext */
static HTAB *
create_string_hash(const char *name, long nelem, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = cstring_ptr_hash;
	ctl.match = cstring_ptr_match;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(nelem, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* index of "name" in map, or -1 */
static int
name_lookup(HTAB *map, const char *name)
{
	NameEntry  *e = hash_search(map, &name, HASH_FIND, NULL);

	return e ? e->index : -1;
}

/*
 * name_add adds "name" with index *count (then increments *count) unless
 * present; returns true if it was added.
 */
static bool
name_add(HTAB *map, const char *name, int *count)
{
	bool		found;
	NameEntry  *e = hash_search(map, &name, HASH_ENTER, &found);

	if (found)
		return false;
	e->index = (*count)++;
	return true;
}

/* allocates the nrows * ncols cell matrix, refusing absurd sizes */
static JsonbValue **
alloc_cells(const char *module, const char *field, int nrows, int ncols)
{
	Size		n = (Size) nrows * (Size) ncols;

	if (ncols > 0 && n / ncols != (Size) nrows)
		n = MaxAllocHugeSize;
	if (n >= MaxAllocHugeSize / sizeof(JsonbValue *))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: \"%s\" is too large", module, field)));
	return MemoryContextAllocHuge(CurrentMemoryContext,
								  Max(n, 1) * sizeof(JsonbValue *));
}

/*
 * table_from_json builds a JoinTable from a JSON array of objects.  The
 * columns are all keys of all rows.  Cells point into "array".
 */
static JoinTable *
table_from_json(const char *module, const char *field, Jsonb *array)
{
	JoinTable  *t = palloc0(sizeof(JoinTable));
	int			nelems = allma_jsonb_array_length(array);
	JsonbContainer **rows = palloc(Max(nelems, 1) * sizeof(JsonbContainer *));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			capacity = 16;
	int			r;
	int			c;

	t->field = field;
	t->colmap = create_string_hash("allma join columns", 16, sizeof(NameEntry));
	t->colnames = palloc(capacity * sizeof(char *));

	/* pass 1: collect the rows and the union of their keys */
	it = JsonbIteratorInit(&array->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbIterator *rit;
		JsonbValue	k;

		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: \"%s\" must be an array of objects", module, field),
					 errdetail("The element at index %d is not an object.",
							   t->nrows)));
		rows[t->nrows++] = v.val.binary.data;

		rit = JsonbIteratorInit(v.val.binary.data);
		while ((tok = JsonbIteratorNext(&rit, &k, true)) != WJB_DONE)
		{
			char	   *name;

			if (tok != WJB_KEY)
				continue;
			name = pnstrdup(k.val.string.val, k.val.string.len);
			if (name_lookup(t->colmap, name) >= 0)
			{
				pfree(name);
				continue;
			}
			if (t->ncols == capacity)
			{
				capacity *= 2;
				t->colnames = repalloc(t->colnames, capacity * sizeof(char *));
			}
			t->colnames[t->ncols] = name;
			name_add(t->colmap, name, &t->ncols);
		}
	}

	/* pass 2: the cells */
	t->cells = alloc_cells(module, field, t->nrows, t->ncols);
	for (r = 0; r < t->nrows; r++)
	{
		for (c = 0; c < t->ncols; c++)
			t->cells[(Size) r * t->ncols + c] =
				getKeyJsonValueFromContainer(rows[r], t->colnames[c],
											 strlen(t->colnames[c]), NULL);
	}
	pfree(rows);
	return t;
}

/* state of the CSV reader */
typedef struct CsvReader
{
	const char *text;
	int			len;
	int			pos;
	int			line;			/* line number at pos, from 1 */
} CsvReader;

/*
 * csv_next_record reads one record (RFC 4180: comma separated, fields may
 * be double-quoted, "" is a quote inside a quoted field, and quoted fields
 * may hold commas and line breaks; lines end with LF or CRLF).  A quote
 * inside an unquoted field is an ordinary character; text after a closing
 * quote is kept.  Returns the fields as a List of C strings, or NIL at the
 * end of the text.  Blank lines are skipped.  *line gets the record's first
 * line number.  Throws on an unterminated quoted field.
 */
static List *
csv_next_record(const char *module, const char *field, CsvReader *rd,
				int *line)
{
	for (;;)
	{
		List	   *fields = NIL;
		bool		blank = true;

		if (rd->pos >= rd->len)
			return NIL;
		*line = rd->line;

		for (;;)
		{
			StringInfoData buf;
			bool		quoted = false;

			initStringInfo(&buf);
			if (rd->pos < rd->len && rd->text[rd->pos] == '"')
			{
				int			start_line = rd->line;

				quoted = true;
				rd->pos++;
				for (;;)
				{
					char		ch;

					if (rd->pos >= rd->len)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("%s: \"%s\" is not valid CSV", module, field),
								 errdetail("The quoted field starting on line %d is not terminated.",
										   start_line)));
					ch = rd->text[rd->pos];
					if (ch == '"')
					{
						if (rd->pos + 1 < rd->len && rd->text[rd->pos + 1] == '"')
						{
							appendStringInfoChar(&buf, '"');
							rd->pos += 2;
							continue;
						}
						rd->pos++;
						break;
					}
					if (ch == '\n')
						rd->line++;
					appendStringInfoChar(&buf, ch);
					rd->pos++;
				}
			}
			/* unquoted text, or what follows a closing quote */
			while (rd->pos < rd->len)
			{
				char		ch = rd->text[rd->pos];

				if (ch == ',' || ch == '\n' || ch == '\r')
					break;
				appendStringInfoChar(&buf, ch);
				rd->pos++;
			}

			if (quoted || fields != NIL ||
				strspn(buf.data, " \t") != (size_t) buf.len)
				blank = false;
			fields = lappend(fields, buf.data);

			if (rd->pos < rd->len && rd->text[rd->pos] == ',')
			{
				rd->pos++;
				continue;
			}
			break;
		}

		/* end of line */
		if (rd->pos < rd->len && rd->text[rd->pos] == '\r')
			rd->pos++;
		if (rd->pos < rd->len && rd->text[rd->pos] == '\n')
			rd->pos++;
		rd->line++;

		if (!blank)
			return fields;
		list_free_deep(fields);
	}
}

/*
 * table_from_csv builds a JoinTable from CSV text whose first record is
 * the header.  Every cell is a string.  Throws on a duplicate column name
 * or a record whose field count differs from the header's.
 */
static JoinTable *
table_from_csv(const char *module, const char *field, const char *text, int len)
{
	JoinTable  *t = palloc0(sizeof(JoinTable));
	CsvReader	rd;
	List	   *header;
	List	   *rec;
	ListCell   *lc;
	List	   *rows = NIL;
	int			line;
	int			r;

	t->field = field;
	t->colmap = create_string_hash("allma join columns", 16, sizeof(NameEntry));

	rd.text = text;
	rd.len = len;
	rd.pos = 0;
	rd.line = 1;
	/* a UTF-8 byte order mark, as spreadsheet exports write */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		rd.pos = 3;

	header = csv_next_record(module, field, &rd, &line);
	t->ncols = list_length(header);
	t->colnames = palloc(Max(t->ncols, 1) * sizeof(char *));
	{
		int			n = 0;

		foreach(lc, header)
		{
			char	   *name = lfirst(lc);

			if (!name_add(t->colmap, name, &n))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s: \"%s\" is not valid CSV", module, field),
						 errdetail("The header names column \"%s\" twice.", name)));
			t->colnames[n - 1] = name;
		}
	}

	while ((rec = csv_next_record(module, field, &rd, &line)) != NIL)
	{
		JsonbValue *vals;
		int			c = 0;

		if (list_length(rec) != t->ncols)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: \"%s\" is not valid CSV", module, field),
					 errdetail_plural("The record on line %d has %d field, but the header has %d.",
									  "The record on line %d has %d fields, but the header has %d.",
									  list_length(rec),
									  line, list_length(rec), t->ncols)));
		vals = palloc(t->ncols * sizeof(JsonbValue));
		foreach(lc, rec)
		{
			char	   *s = lfirst(lc);

			vals[c].type = jbvString;
			vals[c].val.string.val = s;
			vals[c].val.string.len = strlen(s);
			c++;
		}
		list_free(rec);
		rows = lappend(rows, vals);
		if (list_length(rows) > ALLMA_JOIN_MAX_ROWS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: \"%s\" has more than %d rows",
							module, field, ALLMA_JOIN_MAX_ROWS)));
	}

	t->nrows = list_length(rows);
	t->cells = alloc_cells(module, field, t->nrows, t->ncols);
	r = 0;
	foreach(lc, rows)
	{
		JsonbValue *vals = lfirst(lc);
		int			c;

		for (c = 0; c < t->ncols; c++)
			t->cells[(Size) r * t->ncols + c] = &vals[c];
		r++;
	}
	list_free(rows);
	return t;
}

/*
 * load_source reads "left_source" or "right_source" and its format field
 * ("json" or "csv"; inferred from the value's type when absent) into a
 * JoinTable.
 */
static JoinTable *
load_source(const char *module, Jsonb *input, const char *field,
			const char *format_field)
{
	static const char *const formats[] = {"json", "csv", NULL};
	Jsonb	   *src = allma_transform_get_optional(input, field);
	int			format;
	JsonbValue	sv;
	bool		is_string;

	if (src == NULL)
		allma_transform_missing_field(module, field);
	is_string = allma_jsonb_scalar(src, &sv) && sv.type == jbvString;
	if (!is_string && !allma_jsonb_is_array(src))
		allma_transform_bad_field(module, field, "a JSON array or a CSV string");

	format = allma_transform_get_choice(module, input, format_field, formats, is_string ? 1 : 0);
	if (format == 1 && !is_string)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"%s\" must be a string when \"%s\" is csv",
						module, field, format_field)));
	if (format == 0 && is_string)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"%s\" must be an array when \"%s\" is json",
						module, field, format_field)));

	if (format == 1)
		return table_from_csv(module, field, sv.val.string.val, sv.val.string.len);
	if (allma_jsonb_array_length(src) > ALLMA_JOIN_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: \"%s\" has more than %d rows",
						module, field, ALLMA_JOIN_MAX_ROWS)));
	return table_from_json(module, field, src);
}

/*
 * value_text gives the text of a cell: strings raw, numbers as numeric_out
 * writes them (without trailing fractional zeros when "trim"), booleans as
 * true/false, null as "", objects and arrays as JSON text.
 */
static char *
value_text(JsonbValue *v, bool trim)
{
	Numeric		n;

	switch (v->type)
	{
		case jbvNull:
			return pstrdup("");
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvNumeric:
			n = v->val.numeric;
			if (trim)
				n = DatumGetNumeric(DirectFunctionCall1(numeric_trim_scale,
														NumericGetDatum(n)));
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(n)));
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * row_key builds the hash key of row "row" from the key columns
 * "keycols[0..nkeys-1]": each part's display text preceded by its length,
 * so that no two different key tuples share a string.  NULL when a part is
 * missing or null (such a row never matches).
 */
static char *
row_key(JoinTable *t, int row, const int *keycols, int nkeys)
{
	StringInfoData buf;
	int			k;

	initStringInfo(&buf);
	for (k = 0; k < nkeys; k++)
	{
		JsonbValue *cell;
		char	   *s;

		if (keycols[k] < 0)
			return NULL;
		cell = t->cells[(Size) row * t->ncols + keycols[k]];
		if (cell == NULL || cell->type == jbvNull)
			return NULL;
		s = value_text(cell, true);
		appendStringInfo(&buf, "%zu:%s", strlen(s), s);
		pfree(s);
	}
	return buf.data;
}

/* appends s to a CSV line, quoted when it holds a comma, quote or line break */
static void
csv_append_field(StringInfo out, const char *s)
{
	const char *p;

	if (strpbrk(s, ",\"\r\n") == NULL)
	{
		appendStringInfoString(out, s);
		return;
	}
	appendStringInfoChar(out, '"');
	for (p = s; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(out, '"');
		appendStringInfoChar(out, *p);
	}
	appendStringInfoChar(out, '"');
}

/* the output being built by allma_transform_join_data */
typedef struct JoinOutput
{
	int			ncols;
	char	  **colnames;
	int		   *left_src;		/* per output column: left column or -1 */
	int		   *right_src;		/* per output column: right column or -1 */
	int		   *key_of;			/* per output column: join key number or -1 */
	int		   *right_keycols;	/* per join key: right column or -1 */
	bool		csv;
	JsonbParseState *state;		/* JSON output */
	StringInfoData text;		/* CSV output */
	int			nrows;
	const char *module;
} JoinOutput;

/*
 * emit_row appends the merged row of left row "l" and right row "r" (either
 * may be -1 for "no row") to the output.
 */
static void
emit_row(JoinOutput *out, JoinTable *left, JoinTable *right, int l, int r)
{
	int			c;

	if (out->nrows >= ALLMA_JOIN_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: the join result has more than %d rows",
						out->module, ALLMA_JOIN_MAX_ROWS)));
	out->nrows++;

	if (out->csv)
		appendStringInfoChar(&out->text, '\n');
	else
		pushJsonbValue(&out->state, WJB_BEGIN_OBJECT, NULL);

	for (c = 0; c < out->ncols; c++)
	{
		JsonbValue *lv = NULL;
		JsonbValue *rv = NULL;
		JsonbValue *v;
		JsonbValue	null;

		if (l >= 0 && out->left_src[c] >= 0)
			lv = left->cells[(Size) l * left->ncols + out->left_src[c]];
		if (r >= 0 && out->key_of[c] >= 0)
		{
			int			rc = out->right_keycols[out->key_of[c]];

			if (rc >= 0)
				rv = right->cells[(Size) r * right->ncols + rc];
		}
		else if (r >= 0 && out->right_src[c] >= 0)
			rv = right->cells[(Size) r * right->ncols + out->right_src[c]];

		/* join keys keep the left value; other columns take the right one */
		if (out->key_of[c] >= 0)
			v = (l >= 0) ? lv : rv;
		else
			v = rv ? rv : lv;
		if (v == NULL)
		{
			null.type = jbvNull;
			v = &null;
		}

		if (out->csv)
		{
			char	   *s = value_text(v, false);

			if (c > 0)
				appendStringInfoChar(&out->text, ',');
			csv_append_field(&out->text, s);
			pfree(s);
		}
		else
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = out->colnames[c];
			k.val.string.len = strlen(out->colnames[c]);
			pushJsonbValue(&out->state, WJB_KEY, &k);
			allma_transform_push_value(&out->state, WJB_VALUE, v);
		}
	}

	if (!out->csv)
		pushJsonbValue(&out->state, WJB_END_OBJECT, NULL);
}

/* true when the List of C strings "list" contains s */
static bool
string_member(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		if (strcmp(lfirst(lc), s) == 0)
			return true;
	}
	return false;
}

/* reads a JSON array of non-empty strings at "field" into a List */
static List *
get_string_list(const char *module, Jsonb *input, const char *field,
				bool allow_empty)
{
	Jsonb	   *arr = allma_transform_get_array(module, input, field);
	List	   *elems = allma_jsonb_array_elements(arr);
	List	   *result = NIL;
	ListCell   *lc;

	if (elems == NIL && !allow_empty)
		allma_transform_bad_field(module, field, "a non-empty array of column names");
	foreach(lc, elems)
	{
		JsonbValue	v;

		if (!allma_jsonb_scalar(lfirst(lc), &v) || v.type != jbvString ||
			v.val.string.len == 0)
			allma_transform_bad_field(module, field, "an array of column names (non-empty strings)");
		result = lappend(result, pnstrdup(v.val.string.val, v.val.string.len));
	}
	return result;
}

/*
 * get_key_names reads join_keys or key_mappings (exactly one must be given)
 * into parallel lists of left and right column names.
 */
static void
get_key_names(const char *module, Jsonb *input, List **lkeys, List **rkeys)
{
	bool		has_keys = allma_transform_get_optional(input, "join_keys") != NULL;
	bool		has_mappings = allma_transform_get_optional(input, "key_mappings") != NULL;

	if (has_keys == has_mappings)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: exactly one of \"join_keys\" and \"key_mappings\" must be given",
						module),
				 errhint("Use \"join_keys\" for key columns with the same name on both sides and \"key_mappings\" ([{\"left\": ..., \"right\": ...}]) otherwise.")));

	if (has_keys)
	{
		*lkeys = get_string_list(module, input, "join_keys", false);
		*rkeys = list_copy(*lkeys);
	}
	else
	{
		List	   *maps = allma_jsonb_array_elements(allma_transform_get_array(module, input, "key_mappings"));
		ListCell   *lc;

		if (maps == NIL)
			allma_transform_bad_field(module, "key_mappings", "a non-empty array");
		*lkeys = NIL;
		*rkeys = NIL;
		foreach(lc, maps)
		{
			Jsonb	   *m = lfirst(lc);
			char	   *l = allma_jsonb_get_cstring(m, "left");
			char	   *r = allma_jsonb_get_cstring(m, "right");

			if (l == NULL || r == NULL || l[0] == '\0' || r[0] == '\0')
				allma_transform_bad_field(module, "key_mappings",
										  "an array of objects with non-empty string \"left\" and \"right\" column names");
			*lkeys = lappend(*lkeys, l);
			*rkeys = lappend(*rkeys, r);
		}
	}
}

/* the column number of each key in t; throws if t has rows but lacks one */
static int *
key_columns(const char *module, JoinTable *t, List *names)
{
	int		   *cols = palloc(list_length(names) * sizeof(int));
	ListCell   *lc;
	int			k = 0;

	foreach(lc, names)
	{
		char	   *name = lfirst(lc);

		cols[k] = name_lookup(t->colmap, name);
		if (cols[k] < 0 && t->nrows > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: join key \"%s\" is not a column of \"%s\"",
							module, name, t->field)));
		k++;
	}
	return cols;
}

/*
 * allma_transform_join_data: {left_source, right_source, left_format?, right_format?,
 * join_keys | key_mappings, join_type?, right_select_columns?,
 * output_format?} -> {result, rowCount}.  See the section comment above for
 * the semantics.  "result" is an array of objects, or for output_format
 * csv a CSV string with a header line ("" when there are no rows).
 */
Jsonb *
allma_transform_join_data(const char *module, Jsonb *input)
{
	static const char *const join_types[] = {"inner", "left", "right", "outer", NULL};
	enum
	{
		JOIN_INNER_T, JOIN_LEFT_T, JOIN_RIGHT_T, JOIN_OUTER_T
	};
	static const char *const out_formats[] = {"json", "csv", NULL};
	int			join_type;
	bool		keep_left;
	bool		keep_right;
	List	   *lkeys;
	List	   *rkeys;
	List	   *select = NIL;
	bool		has_select;
	JoinTable  *left;
	JoinTable  *right;
	int			nkeys;
	int		   *lkeycols;
	int		   *rkeycols;
	HTAB	   *outmap;
	HTAB	   *groups;
	int		   *next_row;
	bool	   *matched;
	int			capacity;
	ListCell   *lc;
	JoinOutput	out;
	int			i;
	int			r;
	Jsonb	   *result;

	/* validate the parameters before loading the (possibly big) sources */
	get_key_names(module, input, &lkeys, &rkeys);
	join_type = allma_transform_get_choice(module, input, "join_type", join_types, 0);
	keep_left = (join_type == JOIN_LEFT_T || join_type == JOIN_OUTER_T);
	keep_right = (join_type == JOIN_RIGHT_T || join_type == JOIN_OUTER_T);
	memset(&out, 0, sizeof(out));
	out.module = module;
	out.csv = allma_transform_get_choice(module, input, "output_format", out_formats, 0) == 1;
	has_select = allma_transform_get_optional(input, "right_select_columns") != NULL;
	if (has_select)
		select = get_string_list(module, input, "right_select_columns", true);

	left = load_source(module, input, "left_source", "left_format");
	right = load_source(module, input, "right_source", "right_format");

	nkeys = list_length(lkeys);
	lkeycols = key_columns(module, left, lkeys);
	rkeycols = key_columns(module, right, rkeys);

	/*
	 * Output columns: the left columns, the left key names, then the
	 * selected right columns that are not join keys of either side.
	 */
	capacity = left->ncols + nkeys + (has_select ? list_length(select) : right->ncols) + 1;
	out.colnames = palloc(capacity * sizeof(char *));
	out.left_src = palloc(capacity * sizeof(int));
	out.right_src = palloc(capacity * sizeof(int));
	out.key_of = palloc(capacity * sizeof(int));
	out.right_keycols = rkeycols;
	outmap = create_string_hash("allma join output columns", capacity, sizeof(NameEntry));

	for (i = 0; i < left->ncols; i++)
	{
		out.colnames[out.ncols] = left->colnames[i];
		name_add(outmap, left->colnames[i], &out.ncols);
	}
	foreach(lc, lkeys)
	{
		if (name_lookup(outmap, lfirst(lc)) < 0)
		{
			out.colnames[out.ncols] = lfirst(lc);
			name_add(outmap, lfirst(lc), &out.ncols);
		}
	}
	if (!has_select)
	{
		for (i = 0; i < right->ncols; i++)
			select = lappend(select, right->colnames[i]);
	}
	foreach(lc, select)
	{
		char	   *name = lfirst(lc);

		if (string_member(rkeys, name) || string_member(lkeys, name))
			continue;
		if (name_lookup(outmap, name) < 0)
		{
			out.colnames[out.ncols] = name;
			name_add(outmap, name, &out.ncols);
		}
	}
	for (i = 0; i < out.ncols; i++)
	{
		char	   *name = out.colnames[i];
		int			k;

		out.left_src[i] = name_lookup(left->colmap, name);
		out.right_src[i] = -1;
		out.key_of[i] = -1;
		k = 0;
		foreach(lc, lkeys)
		{
			if (strcmp(lfirst(lc), name) == 0)
			{
				out.key_of[i] = k;
				break;
			}
			k++;
		}
		if (out.key_of[i] < 0 && !string_member(rkeys, name) &&
			(!has_select || string_member(select, name)))
			out.right_src[i] = name_lookup(right->colmap, name);
	}

	/* build: hash the right rows on their key */
	groups = create_string_hash("allma join keys", Max(right->nrows, 1), sizeof(KeyGroup));
	next_row = palloc(Max(right->nrows, 1) * sizeof(int));
	matched = palloc0(Max(right->nrows, 1) * sizeof(bool));
	for (r = 0; r < right->nrows; r++)
	{
		char	   *key = row_key(right, r, rkeycols, nkeys);
		KeyGroup   *g;
		bool		found;

		next_row[r] = -1;
		if (key == NULL)
			continue;
		g = hash_search(groups, &key, HASH_ENTER, &found);
		if (!found)
			g->head = r;
		else
		{
			next_row[g->tail] = r;
			pfree(key);
		}
		g->tail = r;
	}

	/* probe with each left row, then add the unmatched right rows */
	if (out.csv)
	{
		initStringInfo(&out.text);
		for (i = 0; i < out.ncols; i++)
		{
			if (i > 0)
				appendStringInfoChar(&out.text, ',');
			csv_append_field(&out.text, out.colnames[i]);
		}
	}
	else
		pushJsonbValue(&out.state, WJB_BEGIN_ARRAY, NULL);

	for (i = 0; i < left->nrows; i++)
	{
		char	   *key = row_key(left, i, lkeycols, nkeys);
		KeyGroup   *g = NULL;

		if (key != NULL)
		{
			g = hash_search(groups, &key, HASH_FIND, NULL);
			pfree(key);
		}
		if (g != NULL)
		{
			for (r = g->head; r >= 0; r = next_row[r])
			{
				emit_row(&out, left, right, i, r);
				matched[r] = true;
			}
		}
		else if (keep_left)
			emit_row(&out, left, right, i, -1);
	}
	if (keep_right)
	{
		for (r = 0; r < right->nrows; r++)
		{
			if (!matched[r])
				emit_row(&out, left, right, -1, r);
		}
	}
	hash_destroy(groups);
	hash_destroy(outmap);

	if (out.csv)
		result = allma_jsonb_string(out.nrows > 0 ? out.text.data : "");
	else
		result = JsonbValueToJsonb(pushJsonbValue(&out.state, WJB_END_ARRAY, NULL));

	return allma_jsonb_set_key(allma_transform_result_object("result", result),
							   "rowCount", allma_jsonb_int(out.nrows));
}
