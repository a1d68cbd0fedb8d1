/*-------------------------------------------------------------------------
 *
 * defcheck.h
 *	  Field checkers of flow definitions (defcheck.c), for validate.c and
 *	  the definition checks of the step types (src/steps/).
 *
 * A step type's check function (its row in step.c) receives the checker
 * and the step object; it reads the type's own fields with these and
 * throws on the first problem, naming the step and the field.
 *
 * IDENTIFICATION
 *	  src/defcheck.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_DEFCHECK_H
#define ALLMA_DEFCHECK_H

#include "allma.h"

/*
 * State of one validation: the steps map (to resolve references) and the
 * step being checked, which every message names.
 */
typedef struct AllmaChecker
{
	JsonbContainer *steps;		/* the definition's "steps" object */
	const char *step;			/* key of the step being checked, or NULL */
	bool		inherits;		/* step has a stepDefinitionId: the fields its
								 * type requires may come from there */
} AllmaChecker;

/* one member of an object (key set) or element of an array (key NULL) */
typedef struct AllmaDefMember
{
	char	   *key;
	JsonbValue	value;
} AllmaDefMember;

/* the HTTP methods of apiHttpMethod and the like */
extern const char *const allma_def_http_methods[];

/* naming fields in messages: "step \"x\" field \"f\"" or "flow field \"f\"" */
extern char *allma_def_where(AllmaChecker *ck, const char *field);
extern char *allma_def_member_name(const char *parent, const char *key);
extern char *allma_def_element_name(const char *parent, int i);
extern const char *allma_def_type_name(JsonbValue *v);

/* JSON values and containers */
extern bool allma_def_is_object(JsonbValue *v);
extern bool allma_def_is_array(JsonbValue *v);
extern char *allma_def_string_value(JsonbValue *v);
extern double allma_def_number_value(JsonbValue *v);
extern AllmaDefMember *allma_def_members(JsonbContainer *c, int *count);
extern bool allma_def_lookup(JsonbContainer *c, const char *key, JsonbValue *out);
extern char *allma_def_enum_list(const char *const *allowed);
extern bool allma_def_in_list(const char *s, const char *const *allowed);

/* errors: LM100 for a missing field, LM108 for a wrong type */
extern void allma_def_error_missing(AllmaChecker *ck, const char *field, const char *detail) pg_attribute_noreturn();
extern void allma_def_error_type(AllmaChecker *ck, const char *field, const char *expected, JsonbValue *v) pg_attribute_noreturn();
extern void allma_def_check_enum(AllmaChecker *ck, const char *field, const char *value,
								 const char *const *allowed);
extern void allma_def_check_range(AllmaChecker *ck, const char *field, double value, double lo,
								  bool lo_exclusive, double hi, int sqlstate);

/*
 * Typed field access.  Each getter looks up "key" in obj, reports a
 * missing required field (LM100) or a wrong type (LM108), and returns
 * NULL / false when an optional field is absent.  "parent" is the name of
 * obj for messages (NULL for the step or flow itself).
 */
extern char *allma_def_get_string(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								  const char *key, bool required);
extern char *allma_def_get_nonempty_string(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										   const char *key, bool required);
extern JsonbContainer *allma_def_get_object(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
											const char *key, bool required);
extern JsonbContainer *allma_def_get_array(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										   const char *key, bool required);
extern bool allma_def_get_bool(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							   const char *key, bool *out);
extern bool allma_def_get_number(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								 const char *key, bool integer, double *out);
extern void allma_def_check_number_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										 const char *key, bool integer, double lo, bool lo_exclusive,
										 double hi, int sqlstate);
extern void allma_def_check_enum_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
									   const char *key, bool required, const char *const *allowed);
extern void allma_def_check_string_or_strings(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
											  const char *key, bool required);
extern void allma_def_check_string_array(AllmaChecker *ck, JsonbContainer *arr, const char *field,
										 bool non_empty_items, int sqlstate);

/* step references (LM102), JSONPaths and dot paths (LM103), conditions (LM104), templates (LM105) */
extern void allma_def_check_step_ref(AllmaChecker *ck, const char *field, const char *target);
extern void allma_def_check_step_ref_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										   const char *key, bool required);
extern void allma_def_check_jsonpath(AllmaChecker *ck, const char *field, const char *path);
extern void allma_def_check_settable_path(AllmaChecker *ck, const char *field, const char *path);
extern void allma_def_check_dotpath(AllmaChecker *ck, const char *field, const char *dotpath);
extern void allma_def_check_mapping_source(AllmaChecker *ck, const char *field, const char *path);
extern void allma_def_check_jsonpath_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										   const char *key, bool required);
extern void allma_def_check_condition(AllmaChecker *ck, const char *field, const char *cond);
extern void allma_def_check_condition_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
											const char *key, bool required);
extern void allma_def_check_template(AllmaChecker *ck, const char *field, const char *s);
extern const char *allma_def_clip(const char *s);
extern void allma_def_check_url_template(AllmaChecker *ck, const char *field, const char *s);
extern void allma_def_check_templates_in(AllmaChecker *ck, const char *field, JsonbValue *v);
extern void allma_def_check_templates_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
											const char *key);
extern char *allma_def_get_template_string(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										   const char *key, bool required);

/* mappings and records */
extern void allma_def_check_input_mappings(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										   const char *key);
extern void allma_def_check_literals(AllmaChecker *ck, JsonbContainer *obj, const char *parent);
extern void allma_def_check_jsonpath_record(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
											const char *key);
extern void allma_def_check_string_record(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
										  const char *key);
extern void allma_def_check_context_mappings(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
											 const char *key);

#endif							/* ALLMA_DEFCHECK_H */
