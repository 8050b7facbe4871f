// The shared secret of a `--nnodes` job (`--dist-secret-file PATH` or DPSERVE_DIST_SECRET, never a
// flag value: argv is readable by every local user) and the HMAC-SHA256 challenge-response the
// rendezvous (rendezvous.h) runs with it, so only holders of the secret can read or change what it
// hands out.
#pragma once

#include <string>

namespace dpserve {

// Reads the secret: the file when `file` is given (trailing newlines dropped), else the environment
// variable DPSERVE_DIST_SECRET; an error naming the flag and the variable when neither is there, or
// when it is shorter than 16 bytes.
std::string load_dist_secret(const std::string& file);

// Lower-case hex HMAC-SHA256 of `message` under `secret` (OpenSSL's libcrypto).
std::string hmac_sha256_hex(const std::string& secret, const std::string& message);
// `bytes` random bytes from the system's CSPRNG, as lower-case hex.
std::string random_hex(int bytes);
// Equal strings, in time that does not depend on where they differ.
bool equal_in_constant_time(const std::string& a, const std::string& b);

}  // namespace dpserve
