// Whether this build runs under AddressSanitizer or ThreadSanitizer (scripts/sanitize.sh): such
// builds end with exit(), so the leak check and reports run, where others end with _exit.
#pragma once

namespace dpserve {

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DPSERVE_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DPSERVE_SANITIZED 1
#endif

#ifdef DPSERVE_SANITIZED
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif

}  // namespace dpserve
