// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers. Only what torch's MPSStream.h names.
#pragma once
#include <os/availability.h>

// In Objective-C, dispatch objects are ObjC objects (OS_OBJECT_USE_OBJC).
@protocol OS_dispatch_queue
@end
typedef id<OS_dispatch_queue> dispatch_queue_t;
typedef void (^dispatch_block_t)(void);

#ifdef __cplusplus
extern "C" {
#endif
void dispatch_sync(dispatch_queue_t queue, dispatch_block_t block) API_AVAILABLE(macos(10.6));
#ifdef __cplusplus
}
#endif
