#include "tokenizer/normalizer.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/uchar.h>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

void add_steps(const nlohmann::json& j, std::vector<Normalizer::Step>& steps) {
  using K = Normalizer::Kind;
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) add_steps(n, steps);
  } else if (type == "NFC") {
    steps.push_back({K::kNfc});
  } else if (type == "NFD") {
    steps.push_back({K::kNfd});
  } else if (type == "NFKC") {
    steps.push_back({K::kNfkc});
  } else if (type == "NFKD") {
    steps.push_back({K::kNfkd});
  } else if (type == "Prepend") {
    steps.push_back({K::kPrepend, j.at("prepend").get<std::string>()});
  } else if (type == "Replace") {
    const auto& p = j.at("pattern");
    if (!p.contains("String")) fail("tokenizer.json: Replace normalizer with a Regex pattern is not supported");
    steps.push_back({K::kReplace, p.at("String").get<std::string>(), j.at("content").get<std::string>()});
  } else if (type == "Strip") {
    Normalizer::Step s{K::kStrip};
    s.left = j.value("strip_left", true);
    s.right = j.value("strip_right", true);
    steps.push_back(s);
  } else if (type == "Lowercase") {
    steps.push_back({K::kLowercase});
  } else {
    fail("tokenizer.json: normalizer type '{}' is not supported", type);
  }
}

bool is_ascii(const std::string& s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::string icu_normalize(const std::string& s, Normalizer::Kind kind) {
  if (is_ascii(s)) return s;  // every normal form leaves ASCII unchanged
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n = nullptr;
  switch (kind) {
    case Normalizer::Kind::kNfc: n = unorm2_getNFCInstance(&err); break;
    case Normalizer::Kind::kNfd: n = unorm2_getNFDInstance(&err); break;
    case Normalizer::Kind::kNfkc: n = unorm2_getNFKCInstance(&err); break;
    default: n = unorm2_getNFKDInstance(&err); break;
  }
  if (U_FAILURE(err)) fail("ICU normalizer unavailable: {}", u_errorName(err));
  std::u16string in(s.size() + 1, u'\0');
  int32_t in_len = 0;
  u_strFromUTF8(reinterpret_cast<UChar*>(in.data()), static_cast<int32_t>(in.size()), &in_len, s.data(),
                static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) fail("text is not valid UTF-8 ({})", u_errorName(err));
  std::u16string outw(static_cast<size_t>(in_len) * 3 + 16, u'\0');
  const int32_t out_len = unorm2_normalize(n, reinterpret_cast<const UChar*>(in.data()), in_len,
                                           reinterpret_cast<UChar*>(outw.data()), static_cast<int32_t>(outw.size()), &err);
  if (U_FAILURE(err)) fail("Unicode normalization failed: {}", u_errorName(err));
  std::string out(static_cast<size_t>(out_len) * 3 + 4, '\0');
  int32_t n8 = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &n8, reinterpret_cast<const UChar*>(outw.data()), out_len, &err);
  if (U_FAILURE(err)) fail("Unicode normalization failed: {}", u_errorName(err));
  out.resize(n8);
  return out;
}

bool is_white(uint32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j) {
  Normalizer n;
  add_steps(j, n.steps_);
  return n;
}

std::string Normalizer::apply(std::string text) const {
  for (const Step& s : steps_) {
    switch (s.kind) {
      case Kind::kNfc:
      case Kind::kNfd:
      case Kind::kNfkc:
      case Kind::kNfkd:
        text = icu_normalize(text, s.kind);
        break;
      case Kind::kPrepend:
        if (!text.empty()) text = s.a + text;
        break;
      case Kind::kReplace: {
        if (s.a.empty()) break;
        std::string out;
        out.reserve(text.size() + text.size() / 4);
        size_t pos = 0;
        for (size_t hit; (hit = text.find(s.a, pos)) != std::string::npos; pos = hit + s.a.size()) {
          out.append(text, pos, hit - pos);
          out.append(s.b);
        }
        out.append(text, pos);
        text = std::move(out);
        break;
      }
      case Kind::kStrip: {
        size_t b = 0, e = text.size();
        while (s.left && b < e) {
          size_t len;
          if (!is_white(utf8::decode_at(text, b, &len))) break;
          b += len;
        }
        while (s.right && e > b) {
          size_t k = e - 1;
          while (k > b && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
          size_t len;
          if (!is_white(utf8::decode_at(text, k, &len))) break;
          e = k;
        }
        text = text.substr(b, e - b);
        break;
      }
      case Kind::kLowercase: {
        std::string out;
        out.reserve(text.size());
        for (size_t i = 0; i < text.size();) {
          size_t len;
          const uint32_t c = utf8::decode_at(text, i, &len);
          utf8::append_codepoint(out, static_cast<uint32_t>(u_tolower(static_cast<UChar32>(c))));
          i += len;
        }
        text = std::move(out);
        break;
      }
    }
  }
  return text;
}

}  // namespace dpserve
