/* PLACEHOLDER */
#include "postgres.h"
#include "fmgr.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "launcher.h"
void allma_worker_main(Datum main_arg) { proc_exit(0); }
