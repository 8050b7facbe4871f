// dpserve_vision_probe: one prompt with images through a vision-language model, dumping what the
// tests compare with an independent reference: each image's tower output, then the logits of
// every prompt row (prefilled in chunks, M-RoPE positions from model/mrope.h) and of `--decode`
// greedy steps.
//
//   dpserve_vision_probe --model-path DIR --image A.ppm [--image B.ppm] --tokens '[ids]'
//       --out-embeds E.bin --out-logits L.bin [--chunk N] [--decode K] [--threads N]
//
// --tokens: the prompt with ONE <|image_pad|> per image (expanded here to the image's token count,
// as the server does). Images: binary PPM (P6), edges multiples of patch_size x merge_size.
// stdout: {"tokens": [expanded prompt], "generated": [...], "positions": [3 per prompt token],
//          "delta": M-RoPE decode shift, "tower_seconds": image_patches + tower, all images}
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/model.h"
#include "model/mrope.h"
#include "vision/image_input.h"

using namespace dpserve;

static ImageInput read_ppm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path);
  std::string magic;
  int w = 0, h = 0, maxv = 0;
  in >> magic >> w >> h >> maxv;
  in.get();
  if (magic != "P6" || w <= 0 || h <= 0 || maxv != 255) fail("{}: not a binary 8-bit PPM", path);
  ImageInput img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  in.read(reinterpret_cast<char*>(img.rgb.data()), std::streamsize(img.rgb.size()));
  if (!in) fail("{}: truncated", path);
  return img;
}

int main(int argc, char** argv) {
  CLI::App app{"Run a prompt with images through a vision-language model and dump embeddings and logits"};
  std::string model_path, tokens_json, out_embeds, out_logits;
  std::vector<std::string> images;
  int64_t chunk = 0, decode = 0;
  int threads = 0;
  app.add_option("--model-path", model_path)->required();
  app.add_option("--image", images, "PPM image, one per <|image_pad|> of --tokens");
  app.add_option("--tokens", tokens_json, "JSON list of prompt token ids")->required();
  app.add_option("--out-embeds", out_embeds)->required();
  app.add_option("--out-logits", out_logits)->required();
  app.add_option("--chunk", chunk, "prefill chunk size (0: the whole prompt at once)");
  app.add_option("--decode", decode, "greedy decode steps after the prompt");
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  try {
    LoadOptions lo;
    lo.threads = threads;
    lo.verbose = false;
    auto model = Model::load(model_path, lo);
    if (!model->takes_images()) fail("{} has no vision tower", model_path);
    const auto pre = ImagePreprocessConfig::load(model_path);
    const auto ids = VisionTokenIds::load(model_path);
    const int64_t V = model->config().vocab, H = model->config().hidden;
    std::FILE* fe = std::fopen(out_embeds.c_str(), "wb");
    if (!fe) fail("cannot write {}", out_embeds);
    std::vector<std::vector<float>> embeds;
    std::vector<std::array<int64_t, 2>> grids;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& path : images) {
      const ImageInput img = read_ppm(path);
      const auto patches = image_patches(img, pre);
      const int64_t gh = img.grid_h(pre), gw = img.grid_w(pre);
      embeds.emplace_back(size_t(model->image_tokens(gh, gw) * H));
      model->encode_image(patches.data(), gh, gw, embeds.back().data());
      std::fwrite(embeds.back().data(), sizeof(float), embeds.back().size(), fe);
      grids.push_back({gh / pre.merge_size, gw / pre.merge_size});
    }
    std::fclose(fe);
    const double tower_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Expand each image_pad to its image's tokens; remember which embedding row each one takes.
    std::vector<int32_t> prompt;
    std::vector<const float*> row_embed;
    size_t k = 0;
    for (int32_t t : nlohmann::json::parse(tokens_json).get<std::vector<int32_t>>()) {
      if (t != ids.image_pad) {
        prompt.push_back(t);
        row_embed.push_back(nullptr);
        continue;
      }
      if (k >= embeds.size()) fail("more <|image_pad|> tokens than --image files");
      for (size_t r = 0; r < embeds[k].size() / size_t(H); ++r) {
        prompt.push_back(t);
        row_embed.push_back(&embeds[k][r * size_t(H)]);
      }
      ++k;
    }
    if (k != embeds.size()) fail("{} --image files for {} <|image_pad|> tokens", embeds.size(), k);
    const MropePositions mp = mrope_positions(prompt.data(), int64_t(prompt.size()), ids.image_pad, grids);
    KVPool kv(model->kv_config(256, 16));
    PageTable pt;
    std::FILE* fl = std::fopen(out_logits.c_str(), "wb");
    if (!fl) fail("cannot write {}", out_logits);
    std::vector<float> logits;
    std::vector<int32_t> generated;
    const int64_t n = int64_t(prompt.size());
    const int64_t step = chunk > 0 ? chunk : n;
    int32_t next = -1;
    for (int64_t at = 0; at < n + decode;) {
      const bool pf = at < n;
      const int64_t len = pf ? std::min(step, n - at) : 1;
      ForwardBatch b;
      if (!pt.reserve(kv, at + len)) fail("KV pool out of pages");
      const int32_t* toks = pf ? &prompt[size_t(at)] : &next;
      b.add(toks, len, at, pt.pages.data(), true);
      b.row_embeds.assign(row_embed.begin() + (pf ? at : 0), row_embed.begin() + (pf ? at + len : 0));
      if (!pf) b.row_embeds.assign(1, nullptr);
      for (int64_t i = 0; i < len; ++i)
        for (int a = 0; a < 3; ++a)
          b.mrope_pos.push_back(pf ? mp.pos[size_t(3 * (at + i) + a)] : int32_t(at + mp.delta));
      logits.resize(size_t(len * V));
      model->forward(b, kv, logits.data());
      std::fwrite(logits.data(), sizeof(float), logits.size(), fl);
      at += len;
      pt.len = at;
      if (at >= n) {
        const float* last = &logits[size_t((len - 1) * V)];
        next = int32_t(std::max_element(last, last + V) - last);
        if (int64_t(generated.size()) < decode) generated.push_back(next);
      }
    }
    std::fclose(fl);
    std::cout << nlohmann::json{{"tokens", prompt}, {"generated", generated}, {"positions", mp.pos},
                                {"delta", mp.delta}, {"tower_seconds", tower_s}}.dump() << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpserve_vision_probe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
