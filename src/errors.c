/* PLACEHOLDER */
#include "postgres.h"
