/*-------------------------------------------------------------------------
 *
 * s3.h
 *	  The system/s3-* modules (s3.c), for the module table of aws.c.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/s3.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_S3_H
#define ALLMA_S3_H

#include "allma.h"

#define S3_MODULE_LOADER	"system/s3-data-loader"
#define S3_MODULE_SAVER		"system/s3-data-saver"
#define S3_MODULE_LIST		"system/s3-list-files"

/* runs one of the three modules on input; returns its output */
extern Jsonb *s3_module_run(const char *module, Jsonb *input);

#endif							/* ALLMA_S3_H */
