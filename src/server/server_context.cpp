#include "server/server_context.h"

#include <fmt/format.h>

namespace dpserve {

std::string ServerContext::new_id(const char* prefix) {
  return fmt::format("{}-{:x}{:06x}", prefix, created, next_id.fetch_add(1));
}

}  // namespace dpserve
