// A GGUF model as a user names it: one .gguf file, or a split set (name-00001-of-00003.gguf, as
// llama.cpp's gguf-split writes it) opened from any of its files, or a folder holding exactly one
// of these. The files' tensors form one namespace; the model's metadata is the first file's.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/gguf_file.h"

namespace dpserve {

class GgufSet {
 public:
  // `path`: a GGUF file (any file of a split set) or a folder; throws dpserve::Error.
  explicit GgufSet(const std::string& path);

  const GgufMetadata& metadata() const { return files_.front()->metadata(); }
  // Null when absent.
  const GgufTensorInfo* tensor(std::string_view name) const;
  // Every tensor, file by file in file order.
  const std::vector<const GgufTensorInfo*>& tensors() const { return order_; }
  const std::vector<std::unique_ptr<GgufFile>>& files() const { return files_; }
  const std::string& path() const { return files_.front()->path(); }

 private:
  std::vector<std::unique_ptr<GgufFile>> files_;
  std::vector<const GgufTensorInfo*> order_;
  std::unordered_map<std::string_view, const GgufTensorInfo*> by_name_;
};

// The first GGUF file of the model `path` names: `path` itself (or its split set's first file)
// when it is a GGUF file (it starts with the GGUF magic or is named *.gguf); for a folder without
// config.json, its only GGUF model or split set. "" when `path` is not a GGUF model (a Hugging
// Face folder, a llama2.c checkpoint). A folder with several GGUF models is an error naming them.
std::string find_gguf_model(const std::string& path);

}  // namespace dpserve
