#ifndef CGALPHA_LAB_SUMMARY_H
#define CGALPHA_LAB_SUMMARY_H

/* cgalpha-lab --summary: reads the reports stream (XRANGE, never consuming), the analysis
 * queue's group state and the dead letters, prints "key value" lines to out:
 *   reports N            reports in <ns>:queue:reports
 *   report_tasks N       distinct task ids among them
 *   report_ok N / report_error N / report_undecodable N (reports entries that do not decode)
 *   analysis_length, analysis_lag, analysis_pending, analysis_dead
 *   workers N            live heartbeats (<ns>:state:worker:*)
 *   error <task id> <message>   for the first 20 error reports
 * Redis must be connected. Returns an exit code. */

#include <stdio.h>

#include "cgalpha/app.h"

int lab_summary_run(cga_app_t *app, FILE *out);

#endif
