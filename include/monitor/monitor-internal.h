/* Declarations shared between files of monitor/ only. */
#ifndef MONITOR_MONITOR_INTERNAL_H
#define MONITOR_MONITOR_INTERNAL_H

#include <json-glib/json-glib.h>

/* The query-version result; also the "version" of the greeting. */
JsonNode *qmp_version_info(void);

#endif
