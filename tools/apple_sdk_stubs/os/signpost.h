// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers. The begin/end/event entry points are macros
// that, as on a Mac, accept only string-literal names and formats.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <os/log.h>

typedef uint64_t os_signpost_id_t;
#define OS_SIGNPOST_ID_NULL ((os_signpost_id_t)0)
#define OS_SIGNPOST_ID_INVALID ((os_signpost_id_t)~0)
#define OS_SIGNPOST_ID_EXCLUSIVE ((os_signpost_id_t)0xEEEEB0B5B2B2EEEE)
#define OS_LOG_CATEGORY_POINTS_OF_INTEREST "PointsOfInterest"

#ifdef __cplusplus
extern "C" {
#endif
os_signpost_id_t os_signpost_id_generate(os_log_t log) API_AVAILABLE(macos(10.14));
bool os_signpost_enabled(os_log_t log) API_AVAILABLE(macos(10.14));
// Stand-in for Apple's private emitter; only literal name/format compile.
void mps_ext_stub_signpost_emit(os_log_t log, os_signpost_id_t id, const char* name,
                                const char* format, ...) API_AVAILABLE(macos(10.14));
#ifdef __cplusplus
}
#endif

#define MPS_EXT_STUB_SIGNPOST(log, id, name, fmt, ...) \
  mps_ext_stub_signpost_emit(log, id, "" name "", "" fmt "", ##__VA_ARGS__)
#define os_signpost_interval_begin(log, id, name, ...) MPS_EXT_STUB_SIGNPOST(log, id, name, ##__VA_ARGS__, "")
#define os_signpost_interval_end(log, id, name, ...) MPS_EXT_STUB_SIGNPOST(log, id, name, ##__VA_ARGS__, "")
#define os_signpost_event_emit(log, id, name, ...) MPS_EXT_STUB_SIGNPOST(log, id, name, ##__VA_ARGS__, "")
