#include "parallel/dist_secret.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace dpserve {

namespace {
std::string to_hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}
}  // namespace

std::string load_dist_secret(const std::string& file) {
  std::string secret, where;
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail("--dist-secret-file {}: cannot read it", file);
    std::ostringstream ss;
    ss << in.rdbuf();
    secret = ss.str();
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    where = "--dist-secret-file " + file;
  } else if (const char* env = std::getenv("DPSERVE_DIST_SECRET"); env && *env) {
    secret = env;
    where = "DPSERVE_DIST_SECRET";
  } else {
    fail("--nnodes needs the nodes' shared secret: --dist-secret-file PATH (the same file content on every node) "
         "or the environment variable DPSERVE_DIST_SECRET; it authenticates the --dist-init-addr rendezvous "
         "(e.g. `head -c 32 /dev/urandom | base64 > secret`)");
  }
  if (secret.size() < 16)
    fail("{}: the shared secret has {} bytes; give at least 16 (e.g. `head -c 32 /dev/urandom | base64`)", where,
         secret.size());
  return secret;
}

std::string hmac_sha256_hex(const std::string& secret, const std::string& message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &len);
  return to_hex(mac, len);
}

std::string random_hex(int bytes) {
  std::string raw(size_t(bytes), '\0');
  DP_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes) == 1, "RAND_bytes failed");
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

bool equal_in_constant_time(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace dpserve
