#include "model/gguf_set.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "core/check.h"

namespace fs = std::filesystem;

namespace dpserve {

namespace {

struct SplitName {
  std::string prefix;  // everything before "-00001-of-00003.gguf"
  int no = 0;          // 1-based
  int count = 0;
};

// llama.cpp names split files "%s-%05d-of-%05d.gguf".
bool parse_split_name(const std::string& path, SplitName& out) {
  static const std::regex re(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
  std::smatch m;
  if (!std::regex_match(path, m, re)) return false;
  out.prefix = m[1].str();
  out.no = std::stoi(m[2].str());
  out.count = std::stoi(m[3].str());
  return out.no >= 1 && out.count >= 1 && out.no <= out.count;
}

std::string split_path(const std::string& prefix, int no, int count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, no, count);
}

}  // namespace

std::string find_gguf_model(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "config.json", ec)) return "";
    std::vector<std::string> ggufs;
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.is_regular_file(ec) && e.path().extension() == ".gguf") ggufs.push_back(e.path().string());
    if (ggufs.empty()) return "";
    std::sort(ggufs.begin(), ggufs.end());
    if (ggufs.size() == 1) return ggufs[0];
    // Several files are fine when they are all parts of one split set (a missing part is then
    // reported by GgufSet, naming it).
    SplitName first, other;
    bool one_set = parse_split_name(ggufs[0], first);
    for (size_t i = 1; one_set && i < ggufs.size(); ++i)
      one_set = parse_split_name(ggufs[i], other) && other.prefix == first.prefix && other.count == first.count;
    if (one_set) return split_path(first.prefix, 1, first.count);
    std::string names;
    for (const auto& g : ggufs) names += (names.empty() ? "" : ", ") + fs::path(g).filename().string();
    fail("{} holds several GGUF models ({}): pass --model-path the .gguf file to use", path, names);
  }
  // A .gguf name is taken at its word, so a damaged file gets the GGUF reader's diagnosis.
  if (!fs::is_regular_file(path, ec) || (!has_gguf_magic(path) && fs::path(path).extension() != ".gguf")) return "";
  SplitName s;
  if (parse_split_name(path, s) && s.no != 1) return split_path(s.prefix, 1, s.count);
  return path;
}

GgufSet::GgufSet(const std::string& path) {
  const std::string first = find_gguf_model(path);
  if (first.empty()) fail("{} is not a GGUF model (no GGUF file there)", path);
  files_.push_back(std::make_unique<GgufFile>(first));
  const GgufMetadata& meta = files_[0]->metadata();
  const int64_t count = meta.get_int("split.count").value_or(1);
  SplitName s;
  const bool named = parse_split_name(first, s);
  if (count < 1 || count > 99999) fail("GGUF {}: split.count {} is out of range", first, count);
  if (count > 1 && (!named || s.count != count))
    fail("GGUF {}: split.count says the model is {} files, but the name does not end in -00001-of-{:05d}.gguf", first,
         count, count);
  if (named && s.count != count && count == 1 && meta.has("split.count"))
    fail("GGUF {}: the name says {} split files but split.count is 1", first, s.count);
  for (int64_t i = 2; i <= count; ++i) {
    const std::string p = split_path(s.prefix, int(i), int(count));
    std::error_code ec;
    if (!fs::exists(p, ec)) fail("GGUF {}: split file {} of {} is missing ({})", first, i, count, p);
    files_.push_back(std::make_unique<GgufFile>(p));
  }
  int64_t total = 0;
  for (size_t i = 0; i < files_.size(); ++i) {
    const GgufMetadata& m = files_[i]->metadata();
    if (count > 1) {
      // split.no is 0-based in llama.cpp's gguf-split.
      const auto no = m.get_int("split.no");
      const auto cnt = m.get_int("split.count");
      if (!no || *no != int64_t(i) || !cnt || *cnt != count)
        fail("GGUF {}: split.no / split.count are {} / {}, expected {} / {} for file {} of the set",
             files_[i]->path(), no ? std::to_string(*no) : "missing", cnt ? std::to_string(*cnt) : "missing", i,
             count, i + 1);
    }
    for (const GgufTensorInfo& t : files_[i]->tensors()) {
      if (!by_name_.emplace(t.name, &t).second)
        fail("GGUF {}: tensor \"{}\" is also in another file of the split set", files_[i]->path(), t.name);
      order_.push_back(&t);
    }
    total += int64_t(files_[i]->tensors().size());
  }
  if (const auto want = meta.get_int("split.tensors.count"); want && *want != total)
    fail("GGUF {}: split.tensors.count says {} tensors, the {} file(s) hold {}", first, *want, files_.size(), total);
}

const GgufTensorInfo* GgufSet::tensor(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

}  // namespace dpserve
