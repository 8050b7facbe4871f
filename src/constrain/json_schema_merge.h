// Schema-level reasoning the JSON Schema compiler needs before it can emit a grammar: following
// local $refs, merging the branches of an `allOf` into one schema, and proving two `oneOf`
// branches cannot both accept a value we generate (else oneOf cannot be enforced by a grammar).
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace dpserve::constrain {

// Patterns that hold beside 'pattern', where allOf branches had different ones (an annotation
// keyword to the rest of the merge; the string compiler enforces each).
inline constexpr const char* kMergedPatterns = "x-dpserve-patterns";


using Schema = nlohmann::ordered_json;

// Resolves `pointer` ("#", "#/$defs/x", ...) in `root`. Throws dpserve::Error when it does not
// resolve or is not local.
const Schema& resolve_pointer(const Schema& root, const std::string& pointer);

// Follows a chain of bare {"$ref": ...} schemas (annotations allowed beside) to what they name.
const Schema& deref(const Schema& root, const Schema& s);

// True for keywords that never constrain a value (title, description, $defs, ...).
bool is_annotation_keyword(const std::string& k);

// One schema equivalent to (or, where exactness is out of reach, stricter than) the allOf of `a`
// and `b`. Throws dpserve::Error naming a combination it cannot merge.
Schema merge_schemas(const Schema& root, const Schema& a, const Schema& b);

// True only when no value generated from `a` can validate against `b` and vice versa (a
// conservative test: false means "may overlap").
bool provably_disjoint(const Schema& root, const Schema& a, const Schema& b);

}  // namespace dpserve::constrain
