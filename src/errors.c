/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  Allma error objects: building them, and naming PostgreSQL errors.
 *
 * Whatever fails inside a step (a user's SQL, a bound function, a module,
 * the engine's own checks) arrives here as a PostgreSQL ErrorData and
 * leaves as an Allma error object.  The name decides retries and catch
 * rules, so it is chosen carefully:
 *
 *	1. SQLSTATEs LM200..LM203 name PermanentStepError, TransientStepError,
 *	   RetryableStepError and ContentBasedRetryableError: user code raises
 *	   them with RAISE ... USING ERRCODE = 'LM201'.  LM210..LM214 are the
 *	   AWS data modules' errors, named as AWS names them
 *	   (ConditionalCheckFailedException, ...; see src/modules/aws.c).
 *	2. A DETAIL that is a JSON object with "errorName" names any error (and
 *	   its "errorDetails" are kept): user code can raise custom names for
 *	   catch rules.
 *	3. Conditions that usually pass (deadlock, serialization failure,
 *	   lock or statement timeout, out of resources, connection trouble) are
 *	   TransientStepError.
 *	4. Anything else gets the caller's default (PermanentStepError for most
 *	   steps).
 *
 * IDENTIFICATION
 *	  src/errors.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/elog.h"

#include "errors.h"
#include "jsonb_util.h"
#include "modules/aws.h"

Jsonb *
allma_error_make(const char *name, const char *message, Jsonb *details)
{
	Jsonb	   *err = allma_jsonb_empty_object();

	err = allma_jsonb_set_key(err, "errorName", allma_jsonb_string(name));
	err = allma_jsonb_set_key(err, "errorMessage", allma_jsonb_string(message ? message : ""));
	err = allma_jsonb_set_key(err, "errorDetails",
							  details ? details : allma_jsonb_empty_object());
	err = allma_jsonb_set_key(err, "isRetryable",
							  allma_jsonb_bool(allma_error_name_is_retryable(name)));
	return err;
}

bool
allma_error_name_is_retryable(const char *name)
{
	return strcmp(name, ALLMA_ERR_TRANSIENT) == 0 ||
		strcmp(name, ALLMA_ERR_RETRYABLE) == 0 ||
		strcmp(name, ALLMA_ERR_CONTENT) == 0;
}

char *
allma_error_name(Jsonb *error)
{
	char	   *name = allma_jsonb_get_cstring(error, "errorName");

	return name ? name : pstrdup(ALLMA_ERR_PERMANENT);
}

static const char *
name_for_sqlstate(int sqlerrcode, const char *default_name)
{
	switch (sqlerrcode)
	{
		case ERRCODE_ALLMA_PERMANENT_STEP_ERROR:
			return ALLMA_ERR_PERMANENT;
		case ERRCODE_ALLMA_TRANSIENT_STEP_ERROR:
			return ALLMA_ERR_TRANSIENT;
		case ERRCODE_ALLMA_RETRYABLE_STEP_ERROR:
			return ALLMA_ERR_RETRYABLE;
		case ERRCODE_ALLMA_CONTENT_ERROR:
			return ALLMA_ERR_CONTENT;
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_LOCK_NOT_AVAILABLE:
			return ALLMA_ERR_TRANSIENT;
		default:
			if (allma_aws_error_name(sqlerrcode) != NULL)
				return allma_aws_error_name(sqlerrcode);
			break;
	}
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:	/* 40: deadlock, serialization */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53 */
		case ERRCODE_CONNECTION_EXCEPTION:	/* 08 */
			return ALLMA_ERR_TRANSIENT;
		default:
			return default_name;
	}
}

/*
 * allma_error_from_edata turns a caught PostgreSQL error into an Allma
 * error object (see the file header for how the name is chosen).
 */
Jsonb *
allma_error_from_edata(ErrorData *edata, const char *default_name,
					   const char *step_id)
{
	const char *name = name_for_sqlstate(edata->sqlerrcode, default_name);
	Jsonb	   *details = allma_jsonb_empty_object();

	if (edata->detail != NULL && edata->detail[0] == '{')
	{
		Jsonb	   *user = NULL;

		PG_TRY();
		{
			user = allma_jsonb_parse(edata->detail);
		}
		PG_CATCH();
		{
			FlushErrorState();
			user = NULL;
		}
		PG_END_TRY();
		if (allma_jsonb_is_object(user))
		{
			char	   *user_name = allma_jsonb_get_cstring(user, "errorName");
			Jsonb	   *user_details = allma_jsonb_get(user, "errorDetails");

			if (user_name != NULL && user_name[0] != '\0')
				name = user_name;
			if (allma_jsonb_is_object(user_details))
				details = user_details;
		}
		else
			details = allma_jsonb_set_key(details, "detail", allma_jsonb_string(edata->detail));
	}
	else if (edata->detail != NULL)
		details = allma_jsonb_set_key(details, "detail", allma_jsonb_string(edata->detail));

	details = allma_jsonb_set_key(details, "sqlstate",
								  allma_jsonb_string(unpack_sql_state(edata->sqlerrcode)));
	if (edata->hint != NULL)
		details = allma_jsonb_set_key(details, "hint", allma_jsonb_string(edata->hint));
	if (edata->context != NULL)
		details = allma_jsonb_set_key(details, "context", allma_jsonb_string(edata->context));
	if (step_id != NULL)
		details = allma_jsonb_set_key(details, "failedStepInstanceId", allma_jsonb_string(step_id));

	return allma_error_make(name, edata->message, details);
}
