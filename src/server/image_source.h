// Where a request's image bytes come from: a data: URL (base64), raw base64 (SGLang's image_data),
// or a remote http(s) URL that the server's allow-list names (fetched with a timeout and a byte cap).
// Every problem is an ApiError 400 naming the parameter; nothing is fetched unless allowed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/memory_budget.h"
#include "vision/image_input.h"
#include "vision/image_resize.h"

namespace dpserve {

// The served model's image settings and the server's image flags.
struct ImageOptions {
  VisionTokenIds tokens;              // takes_images() false: every image is a 400
  ImagePreprocessConfig preprocess;   // from preprocessor_config.json
  ImageLimits limits;                 // --max-image-pixels
  int64_t max_images = 8;             // --max-images-per-request
  size_t max_bytes = 20 << 20;        // --max-image-bytes: encoded size (after base64 decoding, or fetched)
  std::vector<std::string> allowed_url_prefixes;  // --allowed-image-url-prefix
  double fetch_timeout_s = 10;        // --image-fetch-timeout: the whole fetch, connect to last byte
  int64_t decode_memory = int64_t(512) << 20;  // --image-decode-memory: bytes all decodes may hold at once
  double decode_wait_s = 10;          // --image-decode-wait: how long a decode may wait for its share
  std::shared_ptr<MemoryBudget> decode_budget;  // made from decode_memory when the server starts
};

// Checks an --allowed-image-url-prefix value: http(s)://host[:port]/ and then any path, so a
// prefix can never match a different host ("http://a.com" would match "http://a.com.evil/").
void check_image_url_prefix(const std::string& prefix);

// The encoded image bytes `ref` names. `allow_raw_base64`: a string that is neither a data: nor an
// http(s) URL is taken as base64 (SGLang's /generate image_data); otherwise it is a 400.
std::string image_bytes(const std::string& ref, bool allow_raw_base64, const ImageOptions& opts,
                        const std::string& param);

}  // namespace dpserve
