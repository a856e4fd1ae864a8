// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers.
//
// API_AVAILABLE(macos(X)) becomes clang's availability attribute, so with
// `-target x86_64-apple-macos14` an unguarded call to a newer API fails under
// -Werror=unguarded-availability-new, exactly as on a Mac with that
// deployment target. Only the macos platform is modelled.
#pragma once

#define MPS_EXT_STUB_AVAIL_macos(v) availability(macos, introduced = v)
#define MPS_EXT_STUB_DEPR_macos(a, d) availability(macos, introduced = a, deprecated = d)
#define API_AVAILABLE(p) __attribute__((MPS_EXT_STUB_AVAIL_##p))
#define API_DEPRECATED(msg, p) __attribute__((MPS_EXT_STUB_DEPR_##p))
