// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers.
#pragma once
#include <os/availability.h>

@protocol OS_os_log
@end
typedef id<OS_os_log> os_log_t;

#ifdef __cplusplus
extern "C" {
#endif
os_log_t os_log_create(const char* subsystem, const char* category) API_AVAILABLE(macos(10.12));
#ifdef __cplusplus
}
#endif
