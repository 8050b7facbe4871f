// Every field of a request body is either read, ignored on purpose, or refused: a field the server
// cannot honour is a 400 naming it, never a 200 that silently ignores it. Ignored are only OpenAI
// fields that do not change the output (user, metadata, store, ...; listed in docs/api.md);
// unknown fields are refused, as OpenAI answers "Unrecognized request argument supplied".
#pragma once

#include <nlohmann/json.hpp>

namespace dpserve {

enum class BodyKind { kCompletions, kChat, kGenerate, kSamplingParams };

// Throws ApiError (400) naming the first field that is neither read nor ignored.
void check_fields(const nlohmann::json& body, BodyKind kind);

}  // namespace dpserve
