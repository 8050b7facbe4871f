// GPT-2's reversible byte <-> printable-char map used by byte-level BPE vocabularies ("Ġ" = space).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace dpserve::byte_level {

// UTF-8 spelling of the char that stands for byte b.
const std::array<std::string, 256>& byte_to_char();
// Inverse map for code points < 512 (all mapped chars are below U+0144); -1 when not mapped.
int char_to_byte(uint32_t cp);

}  // namespace dpserve::byte_level
