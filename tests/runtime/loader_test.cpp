// Model loading: malformed and hostile files give a clear dpserve::Error, never a crash.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/config.h"
#include "model/model.h"
#include "model/rope.h"
#include "model/weight_store.h"

namespace fs = std::filesystem;
using namespace dpserve;

namespace {

// config.json `j` is a start-up error whose message names `what`.
void refused(const nlohmann::json& j, const std::string& what) {
  try {
    ModelConfig::from_hf_json(j);
    ADD_FAILURE() << "accepted; expected an error naming " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

fs::path tmpdir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("dpserve_loader_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Writes a safetensors file with the given header object and `data_bytes` zero bytes of data.
void write_st(const fs::path& p, const nlohmann::json& header, size_t data_bytes, int64_t fake_len = -1) {
  std::string h = header.dump();
  uint64_t len = fake_len >= 0 ? uint64_t(fake_len) : h.size();
  std::ofstream out(p, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(char((len >> (8 * i)) & 0xff));
  out << h;
  std::string data(data_bytes, '\0');
  out << data;
}

std::string load_error(const fs::path& p) {
  WeightStore s;
  try {
    load_safetensors_file(p.string(), s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ValidFileLoadsWithShapesAndDtypes) {
  auto d = tmpdir("valid");
  nlohmann::json h = {{"a", {{"dtype", "BF16"}, {"shape", {2, 3}}, {"data_offsets", {0, 12}}}},
                      {"b", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {12, 28}}}},
                      {"__metadata__", {{"format", "pt"}}}};
  write_st(d / "m.safetensors", h, 28);
  WeightStore s;
  load_safetensors_file((d / "m.safetensors").string(), s);
  EXPECT_EQ(s.get("a").dtype, DType::BF16);
  EXPECT_EQ(s.get("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s.get("b").numel(), 4);
  EXPECT_THROW(s.matrix("a", 3, 2), Error);
  EXPECT_NO_THROW(s.matrix("a", 2, 3));
}

// release() drops the whole pages of a converted buffer the store owns (read again: zeros), but not
// those of a still_read range, nor bytes outside the released range.
TEST(WeightStore, ReleaseDropsOwnedPagesButNotStillReadOnes) {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE)), n = 256 * page;
  std::vector<uint8_t> bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = uint8_t(1 + i % 251);
  const std::vector<uint8_t> was = bytes;
  WeightStore store;
  const uint8_t* p = store.keep(std::move(bytes));
  // Released: bytes [10 pages + 100, 200 pages + 7); still read: pages 50-59 (a range inside them).
  const size_t b = 10 * page + 100, e = 200 * page + 7, rb = 50 * page + 3, re = 59 * page + 9;
  store.still_read(p + rb, re - rb);
  store.release(p + b, e - b);
  // Pages are the machine's (the buffer need not start on one): a byte's page goes when the whole
  // page lies in the released range and none of it in the still-read one.
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  size_t dropped = 0, zeros = 0, changed = 0;
  for (size_t i = 0; i < n; ++i) {
    const uintptr_t pg = (base + i) / page * page;
    const bool whole_in = pg >= base + b && pg + page <= base + e;
    const bool touches_read = pg < base + re && pg + page > base + rb;
    if (whole_in && !touches_read) {
      ++dropped;
      zeros += p[i] == 0;
    } else {
      changed += p[i] != was[i];
    }
  }
  EXPECT_GE(dropped, 170 * page);  // ~190 pages released, ~10 of them still read
  EXPECT_EQ(zeros, dropped);       // every byte of a dropped page reads 0
  EXPECT_EQ(changed, 0u);          // the still-read pages, partial pages and all beyond kept
}

TEST(Safetensors, RejectsTruncatedAndInconsistentFiles) {
  auto d = tmpdir("bad");
  nlohmann::json ok = {{"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}}};
  write_st(d / "trunc.safetensors", ok, 8);  // data cut short
  EXPECT_NE(load_error(d / "trunc.safetensors").find("outside"), std::string::npos);

  write_st(d / "hlen.safetensors", ok, 16, 1 << 30);  // header length past the end
  EXPECT_NE(load_error(d / "hlen.safetensors").find("header length"), std::string::npos);

  nlohmann::json neg = {{"a", {{"dtype", "F32"}, {"shape", {-2, 2}}, {"data_offsets", {0, 16}}}}};
  write_st(d / "neg.safetensors", neg, 16);
  EXPECT_NE(load_error(d / "neg.safetensors").find("invalid dimension"), std::string::npos);

  nlohmann::json huge = {{"a", {{"dtype", "F32"}, {"shape", {int64_t(1) << 40, int64_t(1) << 40}}, {"data_offsets", {0, 16}}}}};
  write_st(d / "huge.safetensors", huge, 16);
  EXPECT_FALSE(load_error(d / "huge.safetensors").empty());

  nlohmann::json mism = {{"a", {{"dtype", "F32"}, {"shape", {3, 2}}, {"data_offsets", {0, 16}}}}};
  write_st(d / "mism.safetensors", mism, 16);
  EXPECT_NE(load_error(d / "mism.safetensors").find("needs 24"), std::string::npos);

  nlohmann::json dt = {{"a", {{"dtype", "I8"}, {"shape", {16}}, {"data_offsets", {0, 16}}}}};
  write_st(d / "dt.safetensors", dt, 16);
  EXPECT_NE(load_error(d / "dt.safetensors").find("unsupported dtype"), std::string::npos);

  nlohmann::json rev = {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 0}}}}};
  write_st(d / "rev.safetensors", rev, 16);
  EXPECT_FALSE(load_error(d / "rev.safetensors").empty());

  std::ofstream(d / "tiny.safetensors") << "abc";
  EXPECT_NE(load_error(d / "tiny.safetensors").find("truncated"), std::string::npos);

  write_st(d / "json.safetensors", nlohmann::json::array({1, 2}), 0);
  EXPECT_FALSE(load_error(d / "json.safetensors").empty());
}

TEST(ModelLoad, MissingFilesAndUnknownArchitecturesAreNamed) {
  auto d = tmpdir("cfg");
  try {
    Model::load((d / "nope").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
  try {
    Model::load(d.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
  }
  std::ofstream(d / "config.json") << R"({"architectures": ["GPT2LMHeadModel"], "hidden_size": 8})";
  try {
    Model::load(d.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GPT2LMHeadModel"), std::string::npos);
  }
  std::ofstream(d / "config.json", std::ios::trunc)
      << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10})";
  try {
    Model::load(d.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("safetensors"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, ParsesHfFieldsAndRejectsBadOnes) {
  auto j = nlohmann::json::parse(R"({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
      "vocab_size": 100, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
      "intermediate_size": 128, "decoder_sparse_step": 2, "mlp_only_layers": [3], "norm_topk_prob": true,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0}, "eos_token_id": [5, 6], "torch_dtype": "bfloat16"})");
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::Qwen3Moe);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{5, 6}));
  // decoder_sparse_step 2: layers 1 and 3 are sparse, but 3 is listed as dense.
  EXPECT_FALSE(c.layer_is_moe(0));
  EXPECT_TRUE(c.layer_is_moe(1));
  EXPECT_FALSE(c.layer_is_moe(2));
  EXPECT_FALSE(c.layer_is_moe(3));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);

  auto bad = j;
  bad["num_key_value_heads"] = 3;
  EXPECT_THROW(ModelConfig::from_hf_json(bad), Error);
  bad = j;
  bad.erase("vocab_size");
  try {
    ModelConfig::from_hf_json(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size"), std::string::npos);
  }
  bad = j;
  bad["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  EXPECT_THROW(ModelConfig::from_hf_json(bad), Error);
}

// YaRN on per-head attention (Qwen2 / Qwen3 / Llama) with transformers' keys and defaults; it was
// refused outside DeepSeek before. Each bad field is refused by name.
TEST(ModelConfig, YarnForPerHeadModels) {
  const auto qwen3 = nlohmann::json::parse(R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
      "vocab_size": 100, "intermediate_size": 128, "max_position_embeddings": 40960,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}})");
  ModelConfig c = ModelConfig::from_hf_json(qwen3);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);  // as written, not 40960 / 32768
  EXPECT_DOUBLE_EQ(c.rope_scaling.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_fast, 32);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_slow, 1);
  EXPECT_TRUE(c.rope_scaling.truncate);
  // cos/sin magnitude 0.1 ln 4 + 1 = 1.1386 (mscale(factor, 1) / mscale(factor, 0)).
  EXPECT_NEAR(yarn_mscale(c.rope_scaling.factor, c.rope_scaling.mscale) /
                  yarn_mscale(c.rope_scaling.factor, c.rope_scaling.mscale_all_dim),
              1.1386294361, 1e-9);
  auto j = qwen3;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}, {"mscale", 0.7}};  // mscale alone does not count
  c = ModelConfig::from_hf_json(j);
  EXPECT_DOUBLE_EQ(c.rope_scaling.original_max_position_embeddings, 40960);  // max_position_embeddings
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 0.0);
  auto expect_error = [&](nlohmann::json rs, const char* field) {
    auto bad = qwen3;
    bad["rope_scaling"] = rs;
    try {
      ModelConfig::from_hf_json(bad);
      ADD_FAILURE() << "accepted bad " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_error({{"rope_type", "yarn"}}, "factor");
  expect_error({{"rope_type", "yarn"}, {"factor", 0.5}}, "factor");
  expect_error({{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", 1}, {"beta_slow", 32}}, "beta_slow");
  expect_error({{"rope_type", "yarn"}, {"factor", 4.0}, {"attention_factor", -1.0}}, "attention_factor");
  expect_error({{"rope_type", "yarn"}, {"factor", 4.0}, {"extrapolation_factor", 1.0}}, "extrapolation_factor");
}

// Special ids must index the vocabulary and the context must be a sane length (issue 36: eos 1e9,
// bos -7 and max_position_embeddings 2^40 were accepted); each refusal names the field.
TEST(ModelConfig, SpecialIdsAndContextLengthAreChecked) {
  const auto base = nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 16,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 100,
      "bos_token_id": 1, "eos_token_id": 99, "max_position_embeddings": 16777216})");
  const ModelConfig ok = ModelConfig::from_hf_json(base);
  EXPECT_EQ(ok.bos_id, 1);
  EXPECT_EQ(ok.eos_ids, (std::vector<int32_t>{99}));
  EXPECT_EQ(ok.max_pos, int64_t(1) << 24);
  auto nulls = base;
  nulls["bos_token_id"] = nullptr;
  nulls["eos_token_id"] = nullptr;
  EXPECT_NO_THROW(ModelConfig::from_hf_json(nulls));
  const std::pair<const char*, nlohmann::json> cases[] = {
      {"eos_token_id", 1000000000}, {"eos_token_id", 100}, {"eos_token_id", nlohmann::json::array({5, -1})},
      {"eos_token_id", "2"}, {"eos_token_id", 2.5}, {"bos_token_id", -7}, {"bos_token_id", 100},
      {"bos_token_id", uint64_t(1) << 63}, {"max_position_embeddings", int64_t(1) << 40},
      {"max_position_embeddings", (int64_t(1) << 24) + 1}, {"max_position_embeddings", 0},
      {"max_position_embeddings", -5}};
  for (const auto& [key, value] : cases) {
    auto bad = base;
    bad[key] = value;
    try {
      ModelConfig::from_hf_json(bad);
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

// The field names and defaults of DeepSeek-V2-Lite's and DeepSeek-V3's published config.json.
TEST(ModelConfig, ParsesDeepseekV2LiteAndV3) {
  auto v2 = nlohmann::json::parse(R"({"architectures": ["DeepseekV2ForCausalLM"], "hidden_size": 2048,
      "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 102400,
      "intermediate_size": 10944, "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
      "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64, "n_shared_experts": 2,
      "num_experts_per_tok": 6, "moe_intermediate_size": 1408, "first_k_dense_replace": 1, "moe_layer_freq": 1,
      "topk_method": "greedy", "n_group": 1, "topk_group": 1, "norm_topk_prob": false, "scoring_func": "softmax",
      "routed_scaling_factor": 1.0, "max_position_embeddings": 163840, "rope_theta": 10000,
      "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                       "original_max_position_embeddings": 4096, "type": "yarn"}, "hidden_act": "silu"})");
  ModelConfig c = ModelConfig::from_hf_json(v2);
  EXPECT_EQ(c.arch, Arch::DeepseekV2);
  EXPECT_TRUE(c.mla.enabled());
  EXPECT_EQ(c.mla.q_lora_rank, 0);
  EXPECT_EQ(c.mla.q_head_dim(), 192);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 0.707);
  EXPECT_EQ(c.n_experts, 64);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_FALSE(c.layer_is_moe(0));
  EXPECT_TRUE(c.layer_is_moe(1));
  EXPECT_TRUE(c.layer_is_moe(26));
  EXPECT_EQ(c.routing.topk, MoeRouting::TopK::Greedy);
  EXPECT_FALSE(c.routing.normalize);

  auto v3 = v2;
  v3["architectures"] = {"DeepseekV3ForCausalLM"};
  v3["q_lora_rank"] = 1536;
  v3["n_routed_experts"] = 256;
  v3["n_group"] = 8;
  v3["topk_group"] = 4;
  v3["num_experts_per_tok"] = 8;
  v3["first_k_dense_replace"] = 3;
  for (const char* k : {"topk_method", "scoring_func", "norm_topk_prob"}) v3.erase(k);  // V3's defaults
  v3["routed_scaling_factor"] = 2.5;
  c = ModelConfig::from_hf_json(v3);
  EXPECT_EQ(c.arch, Arch::DeepseekV3);
  EXPECT_EQ(c.mla.q_lora_rank, 1536);
  EXPECT_EQ(c.routing.topk, MoeRouting::TopK::NoauxTc);
  EXPECT_EQ(c.routing.scoring, MoeRouting::Scoring::Sigmoid);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_TRUE(c.routing.scale_normalized);
  EXPECT_FALSE(c.layer_is_moe(2));
  EXPECT_TRUE(c.layer_is_moe(3));

  // What cannot be honoured is refused, naming the field.
  auto expect_error = [](nlohmann::json j, const char* field) {
    try {
      ModelConfig::from_hf_json(j);
      ADD_FAILURE() << "accepted bad " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  auto bad = v3;
  bad["topk_group"] = 9;
  expect_error(bad, "topk_group");
  bad = v3;
  bad["n_group"] = 7;
  expect_error(bad, "n_group");
  bad = v3;
  bad["topk_method"] = "sinkhorn";
  expect_error(bad, "topk_method");
  bad = v3;
  bad["scoring_func"] = "relu";
  expect_error(bad, "scoring_func");
  bad = v3;
  bad["attention_bias"] = true;
  expect_error(bad, "attention_bias");
  bad = v3;
  bad["rope_scaling"]["type"] = "dynamic";
  expect_error(bad, "rope_scaling");
  bad = v3;
  bad["rope_interleave"] = false;  // DeepseekV3Config's key; the released checkpoints rotate adjacent pairs
  expect_error(bad, "rope_interleave");

  // GLM-4.7-Flash (Glm4MoeLiteForCausalLM): DeepSeek-V3 under GLM's name, its MTP layer counted.
  auto lite = v3;
  lite["architectures"] = {"Glm4MoeLiteForCausalLM"};
  lite["num_nextn_predict_layers"] = 1;
  lite.erase("rope_scaling");
  c = ModelConfig::from_hf_json(lite);
  EXPECT_EQ(c.arch, Arch::DeepseekV3);
  EXPECT_EQ(c.arch_name, "Glm4MoeLiteForCausalLM");
  EXPECT_EQ(c.routing.topk, MoeRouting::TopK::NoauxTc);
  EXPECT_EQ(c.nextn_layers, 1);
  EXPECT_TRUE(c.has_mtp_layer_layout());
  bad = lite;
  bad["partial_rotary_factor"] = 0.5;  // only the qk_rope_head_dim part rotates, and all of it
  expect_error(bad, "partial_rotary_factor");
}

TEST(ModelConfig, SlidingWindowIsHonouredOrRefused) {
  auto mixtral = nlohmann::json::parse(R"({"architectures": ["MixtralForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
      "intermediate_size": 128, "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": 4096,
      "max_position_embeddings": 32768})");
  ModelConfig c = ModelConfig::from_hf_json(mixtral);
  EXPECT_EQ(c.arch, Arch::Mixtral);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.n_experts, 8);
  EXPECT_EQ(c.moe_ffn, 128);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_TRUE(c.layer_is_moe(0) && c.layer_is_moe(1));
  mixtral["sliding_window"] = nullptr;
  EXPECT_EQ(ModelConfig::from_hf_json(mixtral).sliding_window, 0);
  mixtral["sliding_window"] = 40000;  // wider than the context: changes nothing
  EXPECT_EQ(ModelConfig::from_hf_json(mixtral).sliding_window, 0);
  auto qwen2 = nlohmann::json::parse(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128,
      "use_sliding_window": false, "sliding_window": 32})");
  EXPECT_EQ(ModelConfig::from_hf_json(qwen2).sliding_window, 0);
  qwen2["use_sliding_window"] = true;
  EXPECT_THROW(ModelConfig::from_hf_json(qwen2), Error);
}

// The config `j` with `key` set to `v` is refused with an error containing `words`.
void expect_refused(nlohmann::json j, const char* key, nlohmann::json v, const std::string& words) {
  j[key] = v;
  try {
    ModelConfig::from_hf_json(j);
    ADD_FAILURE() << key << " accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

// gemma-3-4b-it's config.json as published: the language model's text_config names only what differs
// from Gemma3TextConfig's defaults (num_attention_heads 8, num_key_value_heads 4, head_dim 256,
// vocab_size 262208, query_pre_attn_scalar 256, rope_local_base_freq 10000, sliding_window_pattern 6).
TEST(ModelConfig, Gemma3DefaultsLayersAndRefusals) {
  auto mm = nlohmann::json::parse(R"({"architectures": ["Gemma3ForConditionalGeneration"],
      "boi_token_index": 255999, "eos_token_id": [1, 106], "image_token_index": 262144,
      "model_type": "gemma3", "torch_dtype": "bfloat16",
      "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                      "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                      "sliding_window": 1024},
      "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}})");
  const ModelConfig c = ModelConfig::from_hf_json(mm);
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(c.arch_name, "Gemma3ForConditionalGeneration");
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab, 262208);
  EXPECT_EQ(c.ffn, 10240);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 16.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rope_local_theta, 1e4);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_TRUE(c.tie_embeddings && c.qk_norm && c.sandwich_norms);
  EXPECT_EQ(c.mlp_act, GateAct::GeluTanh);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{1, 106}));
  EXPECT_EQ(c.bos_id, 2);
  EXPECT_EQ(c.sliding_window, 1024);
  for (int64_t l = 0; l < 34; ++l) EXPECT_EQ(c.layer_is_sliding(l), (l + 1) % 6 != 0) << l;
  // layer_types wins over the pattern; a list of the wrong length or kind is refused.
  auto text = mm["text_config"];
  text["architectures"] = {"Gemma3ForCausalLM"};
  text["num_hidden_layers"] = 3;
  text["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  const ModelConfig t = ModelConfig::from_hf_json(text);
  EXPECT_TRUE(!t.layer_is_sliding(0) && t.layer_is_sliding(1) && !t.layer_is_sliding(2));
  expect_refused(text, "layer_types", {"full_attention"}, "one entry per layer");
  expect_refused(text, "layer_types", {"full_attention", "chunked_attention", "full_attention"}, "layer_types[1]");
  expect_refused(text, "final_logit_softcapping", 30.0, "final_logit_softcapping 30");
  expect_refused(text, "attn_logit_softcapping", 50.0, "attn_logit_softcapping 50");
  expect_refused(text, "hidden_activation", "gelu", "hidden_activation \"gelu\"");
  expect_refused(text, "use_bidirectional_attention", true, "use_bidirectional_attention");
  expect_refused(text, "query_pre_attn_scalar", 0, "query_pre_attn_scalar");
  mm.erase("text_config");
  EXPECT_THROW(ModelConfig::from_hf_json(mm), Error);
}

// gpt-oss-20b's config.json as published (its 24 layer_types left out: the default alternation is
// the same), then what cannot be honoured.
TEST(ModelConfig, GptOssFieldsAndRefusals) {
  auto j = nlohmann::json::parse(R"({"architectures": ["GptOssForCausalLM"], "attention_bias": true,
      "attention_dropout": 0.0, "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu",
      "hidden_size": 2880, "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
      "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64,
      "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 8, "num_local_experts": 32,
      "output_router_logits": false, "pad_token_id": 199999,
      "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                              "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
      "rms_norm_eps": 1e-05, "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
      "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false}, "rope_theta": 150000,
      "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0, "tie_word_embeddings": false,
      "transformers_version": "4.55.0.dev0", "use_cache": true, "vocab_size": 201088})");
  const ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::GptOss);
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.attn_sinks && c.moe_bias && !c.tie_embeddings && !c.qk_norm);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_experts, 32);
  EXPECT_EQ(c.n_experts_per_tok, 4);
  EXPECT_EQ(c.moe_ffn, 2880);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_EQ(c.mlp_act, GateAct::SwigluOai);
  EXPECT_FLOAT_EQ(c.swiglu_limit, 7.0f);
  EXPECT_EQ(c.sliding_window, 128);
  for (int64_t l = 0; l < 24; ++l) {
    EXPECT_EQ(c.layer_is_sliding(l), l % 2 == 0) << l;
    EXPECT_TRUE(c.layer_is_moe(l)) << l;
  }
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_FALSE(c.rope_scaling.truncate);
  // layer_types, where given, decide.
  auto typed = j;
  typed["num_hidden_layers"] = 3;
  typed["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
  const ModelConfig t = ModelConfig::from_hf_json(typed);
  EXPECT_FALSE(t.layer_is_sliding(0));
  EXPECT_TRUE(t.layer_is_sliding(1) && t.layer_is_sliding(2));

  auto expect_error = [](nlohmann::json bad, const char* field) {
    try {
      ModelConfig::from_hf_json(bad);
      ADD_FAILURE() << "accepted bad " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  auto bad = j;
  bad["attention_bias"] = false;
  expect_error(bad, "attention_bias");
  bad = j;
  bad["quantization_config"]["quant_method"] = "fp8";
  expect_error(bad, "quant_method");
  bad = j;
  bad["swiglu_limit"] = 0;
  expect_error(bad, "swiglu_limit");
  bad = j;
  bad["layer_types"] = {"full_attention"};
  expect_error(bad, "layer_types");
  bad = j;
  bad.erase("num_local_experts");
  expect_error(bad, "num_local_experts");
  // Llama's mlp_bias would need biases no layer adds.
  auto llama = nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128,
      "mlp_bias": true})");
  expect_error(llama, "mlp_bias");
  llama.erase("mlp_bias");
  llama["attention_bias"] = true;
  const ModelConfig lb = ModelConfig::from_hf_json(llama);
  EXPECT_TRUE(lb.qkv_bias && lb.o_bias);  // LlamaAttention's o_proj takes attention_bias too
}

// gemma-2-2b-it's config.json as published, then with the keys Gemma2Config has defaults for left out.
TEST(ModelConfig, Gemma2SoftcapsLayersAndRefusals) {
  auto j = nlohmann::json::parse(R"({"architectures": ["Gemma2ForCausalLM"], "attention_bias": false,
      "attention_dropout": 0.0, "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid",
      "eos_token_id": [1, 107], "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
      "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02,
      "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 8,
      "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0, "query_pre_attn_scalar": 256,
      "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096, "torch_dtype": "float32",
      "vocab_size": 256000})");
  const ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::Gemma2);
  EXPECT_TRUE(c.is_gemma() && c.tie_embeddings && c.sandwich_norms && !c.qk_norm);
  EXPECT_EQ(c.mlp_act, GateAct::GeluTanh);
  EXPECT_FLOAT_EQ(c.attn_softcap, 50.0f);
  EXPECT_FLOAT_EQ(c.final_softcap, 30.0f);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 16.0);
  EXPECT_DOUBLE_EQ(c.rope_local_theta, 0.0);  // sliding layers rotate as the full ones
  EXPECT_FLOAT_EQ(c.norm_offset, 1.0f);
  EXPECT_EQ(c.sliding_window, 4096);
  for (int64_t l = 0; l < 26; ++l) EXPECT_EQ(c.layer_is_sliding(l), l % 2 == 0) << l;
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{1, 107}));
  // Gemma2Config's defaults, and null caps (none).
  auto bare = nlohmann::json::parse(R"({"architectures": ["Gemma2ForCausalLM"], "hidden_size": 3584,
      "intermediate_size": 14336, "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8})");
  const ModelConfig d = ModelConfig::from_hf_json(bare);
  EXPECT_FLOAT_EQ(d.attn_softcap, 50.0f);
  EXPECT_FLOAT_EQ(d.final_softcap, 30.0f);
  EXPECT_EQ(d.head_dim, 256);
  EXPECT_EQ(d.vocab, 256000);
  EXPECT_EQ(d.sliding_window, 4096);
  EXPECT_TRUE(d.tie_embeddings);
  bare["attn_logit_softcapping"] = nullptr;
  bare["final_logit_softcapping"] = nullptr;
  const ModelConfig n = ModelConfig::from_hf_json(bare);
  EXPECT_EQ(n.attn_softcap, 0.0f);
  EXPECT_EQ(n.final_softcap, 0.0f);
  // layer_types wins over the alternation.
  j["num_hidden_layers"] = 3;
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  const ModelConfig t = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(!t.layer_is_sliding(0) && t.layer_is_sliding(1) && !t.layer_is_sliding(2));
  expect_refused(j, "attn_logit_softcapping", -1.0, "attn_logit_softcapping must be positive");
  expect_refused(j, "final_logit_softcapping", 0.0, "final_logit_softcapping must be positive or null");
  expect_refused(j, "rope_local_base_freq", 10000.0, "rope_local_base_freq");
  expect_refused(j, "sliding_window_pattern", 2, "sliding_window_pattern");
  expect_refused(j, "rope_scaling", {{"rope_type", "linear"}, {"factor", 2.0}}, "rope_scaling");
  expect_refused(j, "attention_bias", true, "attention_bias");
  expect_refused(j, "hidden_activation", "gelu", "hidden_activation \"gelu\"");
}

// transformers 5 writes RoPE as rope_parameters (rope_theta inside) and the dtype as "dtype": the same
// model as the older keys describe, field for field.
TEST(ModelConfig, Transformers5RopeParametersAndDtype) {
  auto rope_of = [](const ModelConfig& c) {
    const RopeScaling& r = c.rope_scaling;
    return std::vector<double>{c.rope_theta, double(int(r.type)), r.factor, r.low_freq_factor, r.high_freq_factor,
                               r.original_max_position_embeddings, r.beta_fast, r.beta_slow, r.attention_factor,
                               c.rope_local_theta, double(int(c.dtype))};
  };
  auto old_llama = nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128,
      "rope_theta": 500000.0, "torch_dtype": "float32", "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})");
  auto new_llama = nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128,
      "dtype": "float32", "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})");
  const ModelConfig a = ModelConfig::from_hf_json(old_llama), b = ModelConfig::from_hf_json(new_llama);
  EXPECT_EQ(rope_of(a), rope_of(b));
  EXPECT_DOUBLE_EQ(b.rope_theta, 500000.0);
  EXPECT_EQ(b.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_EQ(b.dtype, DType::F32);
  // Qwen3 with YaRN, and a plain default type (only the base).
  auto qwen = nlohmann::json::parse(R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128,
      "head_dim": 16, "max_position_embeddings": 131072, "rope_parameters": {"rope_type": "yarn",
      "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 32768}})");
  const ModelConfig q = ModelConfig::from_hf_json(qwen);
  EXPECT_DOUBLE_EQ(q.rope_theta, 1e6);
  EXPECT_EQ(q.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(q.rope_scaling.factor, 4.0);
  qwen["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  EXPECT_EQ(ModelConfig::from_hf_json(qwen).rope_scaling.type, RopeScaling::Type::None);
  EXPECT_DOUBLE_EQ(ModelConfig::from_hf_json(qwen).rope_theta, 1e6);
  qwen["rope_parameters"]["partial_rotary_factor"] = 0.5;
  EXPECT_THROW(ModelConfig::from_hf_json(qwen), Error);
  // Gemma 3: per layer type.
  auto gemma = nlohmann::json::parse(R"({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 64,
      "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
      "vocab_size": 100, "intermediate_size": 128, "sliding_window": 8,
      "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}}})");
  const ModelConfig g = ModelConfig::from_hf_json(gemma);
  EXPECT_DOUBLE_EQ(g.rope_theta, 1e6);
  EXPECT_EQ(g.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_DOUBLE_EQ(g.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(g.rope_local_theta, 20000.0);
  gemma["rope_parameters"]["sliding_attention"]["rope_type"] = "linear";
  EXPECT_THROW(ModelConfig::from_hf_json(gemma), Error);
  gemma["rope_parameters"] = {{"chunked_attention", {{"rope_theta", 1.0}}},
                              {"full_attention", nlohmann::json::object()}};
  EXPECT_THROW(ModelConfig::from_hf_json(gemma), Error);
}

// Phi-3.5-mini-instruct's published config shape (LongRoPE over 4096 -> 131072, 48 factor pairs) and
// Phi-4-mini's partial rotary (0.75 of 128-wide heads).
TEST(ModelConfig, Phi3LongRopeAndPartialRotary) {
  std::vector<double> shortf(48), longf(48);
  for (int i = 0; i < 48; ++i) shortf[size_t(i)] = 1.0 + 0.01 * i, longf[size_t(i)] = 1.0 + 1.5 * i;
  nlohmann::json phi = {{"architectures", {"Phi3ForCausalLM"}}, {"hidden_size", 3072}, {"num_hidden_layers", 32},
                        {"num_attention_heads", 32}, {"num_key_value_heads", 32}, {"intermediate_size", 8192},
                        {"vocab_size", 32064}, {"max_position_embeddings", 131072},
                        {"original_max_position_embeddings", 4096}, {"rope_theta", 10000.0},
                        {"sliding_window", 262144}, {"hidden_act", "silu"},
                        {"rope_scaling", {{"type", "longrope"}, {"short_factor", shortf}, {"long_factor", longf}}}};
  const ModelConfig c = ModelConfig::from_hf_json(phi);
  EXPECT_EQ(c.arch, Arch::Phi3);
  EXPECT_EQ(c.rope_dim(), 96);
  EXPECT_EQ(c.sliding_window, 0);  // wider than the context: no window
  const RopeScaling& r = c.rope_scaling;
  ASSERT_EQ(r.type, RopeScaling::Type::LongRope);
  EXPECT_DOUBLE_EQ(r.original_max_position_embeddings, 4096);
  // sqrt(1 + ln(131072 / 4096) / ln(4096)) = sqrt(1 + 5 ln 2 / (12 ln 2)) = sqrt(17 / 12)
  EXPECT_NEAR(r.attention_factor, std::sqrt(17.0 / 12.0), 1e-12);
  // The served context picks the set: the model's own (131072) the long one, 4096 the short one.
  EXPECT_FLOAT_EQ(r.freq_factors[47], float(longf[47]));
  ModelConfig s = c;
  s.rope_scaling.use_longrope(4096);
  EXPECT_FLOAT_EQ(s.rope_scaling.freq_factors[47], float(shortf[47]));
  s.rope_scaling.use_longrope(4097);
  EXPECT_FLOAT_EQ(s.rope_scaling.freq_factors[47], float(longf[47]));
  // The table: pair i turns by pos / (factor_i theta^(2i / 96)) with cos and sin scaled by the factor.
  RopeTable t(c);
  ASSERT_EQ(t.dim(), 96);
  std::vector<float> cs(48), sn(48);
  t.at(1000, cs.data(), sn.data());
  for (int i : {0, 20, 47}) {
    const double angle = 1000.0 / (longf[size_t(i)] * std::pow(10000.0, 2.0 * i / 96.0));
    EXPECT_NEAR(cs[size_t(i)], std::sqrt(17.0 / 12.0) * std::cos(angle), 1e-5) << i;
    EXPECT_NEAR(sn[size_t(i)], std::sqrt(17.0 / 12.0) * std::sin(angle), 1e-5) << i;
  }
  // "su" is the first Phi-3 configs' name; attention_factor given is used as written.
  phi["rope_scaling"]["type"] = "su";
  phi["rope_scaling"]["attention_factor"] = 1.5;
  EXPECT_DOUBLE_EQ(ModelConfig::from_hf_json(phi).rope_scaling.attention_factor, 1.5);
  // Equal contexts: no scaling of cos / sin, short factors.
  phi["max_position_embeddings"] = 4096;
  phi["rope_scaling"].erase("attention_factor");
  const ModelConfig e = ModelConfig::from_hf_json(phi);
  EXPECT_DOUBLE_EQ(e.rope_scaling.attention_factor, 1.0);
  EXPECT_FLOAT_EQ(e.rope_scaling.freq_factors[47], float(shortf[47]));
  // Refused by name: a wrong number of factors, an unknown key, another type.
  auto bad = phi;
  bad["rope_scaling"]["long_factor"] = std::vector<double>(47, 1.0);
  refused(bad, "long_factor");
  bad = phi;
  bad["rope_scaling"]["short_mscale"] = 1.1;
  refused(bad, "short_mscale");
  bad = phi;
  bad["rope_scaling"]["type"] = "dynamic";
  refused(bad, "dynamic");
  // Phi-4-mini: 24 heads of 128, 0.75 rotates 96 (48 pairs); in transformers 5 form as well.
  auto mini = phi;
  mini["hidden_size"] = 3072, mini["num_attention_heads"] = 24, mini["num_key_value_heads"] = 8;
  mini["partial_rotary_factor"] = 0.75;
  EXPECT_EQ(ModelConfig::from_hf_json(mini).rope_dim(), 96);
  EXPECT_EQ(ModelConfig::from_hf_json(mini).rotary_dim, 96);
  auto v5 = mini;
  v5.erase("partial_rotary_factor");
  v5.erase("rope_scaling");
  v5.erase("rope_theta");
  v5["rope_parameters"] = phi["rope_scaling"];
  v5["rope_parameters"]["rope_theta"] = 250000.0;
  v5["rope_parameters"]["partial_rotary_factor"] = 0.75;
  const ModelConfig m5 = ModelConfig::from_hf_json(v5);
  EXPECT_EQ(m5.rotary_dim, 96);
  EXPECT_DOUBLE_EQ(m5.rope_theta, 250000.0);
  EXPECT_EQ(m5.rope_scaling.type, RopeScaling::Type::LongRope);
  mini["partial_rotary_factor"] = 0.3;  // 38.4 -> 38 dims: 19 pairs, not the 48 factors
  refused(mini, "short_factor");
  mini.erase("rope_scaling");
  mini["partial_rotary_factor"] = 1.5;
  refused(mini, "partial_rotary_factor");
  // Only Phi-3 rotates part of the head.
  nlohmann::json llama = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64}, {"num_hidden_layers", 2},
                          {"num_attention_heads", 4}, {"vocab_size", 100}, {"intermediate_size", 128},
                          {"partial_rotary_factor", 0.5}};
  refused(llama, "partial_rotary_factor");
}

// Expected values are SmolLM3Config's and GraniteConfig's documented defaults (transformers'
// configuration files) and SmolLM3-3B's / granite-3.x-8b's published config.json values.
TEST(ModelConfig, SmolLM3AndGraniteFieldsDefaultsAndRefusals) {
  nlohmann::json smol = {{"architectures", {"SmolLM3ForCausalLM"}}, {"hidden_size", 2048},
                         {"num_hidden_layers", 8}, {"num_attention_heads", 16}, {"num_key_value_heads", 4},
                         {"intermediate_size", 11008}, {"vocab_size", 128256}};
  // Without the keys: tied embeddings, rope_theta 2e6, every 4th layer NoPE (layers 3 and 7).
  ModelConfig c = ModelConfig::from_hf_json(smol);
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_DOUBLE_EQ(c.rope_theta, 2000000.0);
  EXPECT_EQ(c.sliding_window, 0);
  for (int64_t l = 0; l < 8; ++l) EXPECT_EQ(c.layer_has_rope(l), l != 3 && l != 7) << l;
  // As published: an explicit list (longer lists are allowed: only the first n_layers entries count),
  // rope_theta 5e6, a window field that use_sliding_window false leaves off.
  smol["no_rope_layers"] = {1, 0, 1, 1, 1, 1, 1, 0, 1, 1};
  smol["rope_theta"] = 5000000.0;
  smol["tie_word_embeddings"] = false;
  smol["use_sliding_window"] = false;
  smol["sliding_window"] = 4096;
  c = ModelConfig::from_hf_json(smol);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5000000.0);
  EXPECT_EQ(c.sliding_window, 0);
  for (int64_t l = 0; l < 8; ++l) EXPECT_EQ(c.layer_has_rope(l), l != 1 && l != 7) << l;
  smol.erase("no_rope_layers");
  smol["no_rope_layer_interval"] = 3;  // layers 2 and 5
  c = ModelConfig::from_hf_json(smol);
  for (int64_t l = 0; l < 8; ++l) EXPECT_EQ(c.layer_has_rope(l), l != 2 && l != 5) << l;
  auto bad = smol;
  bad["no_rope_layers"] = {1, 0, 1};
  refused(bad, "no_rope_layers");
  bad["no_rope_layers"] = {1, 2, 1, 1, 1, 1, 1, 1};
  refused(bad, "no_rope_layers[1]");
  bad = smol;
  bad["no_rope_layer_interval"] = 0;
  refused(bad, "no_rope_layer_interval");
  bad = smol;
  bad["use_sliding_window"] = true;
  refused(bad, "use_sliding_window");
  // Llama has no NoPE layers: its config's no_rope_layers means nothing and changes nothing.
  auto llama = smol;
  llama["architectures"] = {"LlamaForCausalLM"};
  EXPECT_TRUE(ModelConfig::from_hf_json(llama).layer_nope.empty());

  nlohmann::json granite = {{"architectures", {"GraniteForCausalLM"}}, {"hidden_size", 4096},
                            {"num_hidden_layers", 2}, {"num_attention_heads", 32}, {"num_key_value_heads", 8},
                            {"intermediate_size", 12800}, {"vocab_size", 49155}};
  c = ModelConfig::from_hf_json(granite);  // every multiplier 1 by default, untied, no NoPE layers
  EXPECT_FLOAT_EQ(c.embed_scale, 1.0f);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0);  // 1, not 1/sqrt(head_dim): GraniteAttention's scaling is the field
  EXPECT_DOUBLE_EQ(c.residual_scale, 1.0);
  EXPECT_DOUBLE_EQ(c.logit_divisor, 1.0);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_TRUE(c.layer_nope.empty());
  granite["embedding_multiplier"] = 12.0;
  granite["attention_multiplier"] = 0.0078125;
  granite["residual_multiplier"] = 0.22;
  granite["logits_scaling"] = 16;  // an integer is a number too
  c = ModelConfig::from_hf_json(granite);
  EXPECT_FLOAT_EQ(c.embed_scale, 12.0f);
  EXPECT_DOUBLE_EQ(c.attn_scale, 0.0078125);
  EXPECT_DOUBLE_EQ(c.residual_scale, 0.22);
  EXPECT_DOUBLE_EQ(c.logit_divisor, 16.0);
  for (const char* key : {"embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"}) {
    bad = granite;
    bad[key] = 0;
    refused(bad, key);
    bad[key] = "2";
    refused(bad, key);
  }
  // Granite-MoE (granite-3.x-1b-a400m's shape): the multipliers plus Mixtral's routing over
  // intermediate_size-wide experts in every layer.
  auto moe = granite;
  moe["architectures"] = {"GraniteMoeForCausalLM"};
  moe["hidden_size"] = 1024, moe["intermediate_size"] = 512, moe["num_local_experts"] = 32;
  moe["num_experts_per_tok"] = 8, moe["num_attention_heads"] = 16;
  c = ModelConfig::from_hf_json(moe);
  EXPECT_EQ(c.n_experts, 32);
  EXPECT_EQ(c.n_experts_per_tok, 8);
  EXPECT_EQ(c.moe_ffn, 512);
  EXPECT_EQ(c.ffn, 0);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_TRUE(c.layer_is_moe(0) && c.layer_is_moe(1));
  EXPECT_DOUBLE_EQ(c.residual_scale, 0.22);
  bad = moe;
  bad["shared_intermediate_size"] = 1024;
  refused(bad, "shared_intermediate_size");
  bad = moe;
  bad.erase("num_local_experts");
  refused(bad, "num_local_experts");

  // OLMo 2 (Olmo2Config): rms_norm_eps 1e-5 by default, whole-projection q / k norms, post-norms only.
  nlohmann::json olmo = {{"architectures", {"Olmo2ForCausalLM"}}, {"hidden_size", 2048}, {"num_hidden_layers", 2},
                         {"num_attention_heads", 16}, {"intermediate_size", 8192}, {"vocab_size", 100352}};
  c = ModelConfig::from_hf_json(olmo);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_TRUE(c.qk_norm_whole && c.post_norms_only);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.n_kv_heads, 16);
  olmo["rms_norm_eps"] = 1e-6;
  EXPECT_DOUBLE_EQ(ModelConfig::from_hf_json(olmo).rms_eps, 1e-6);
  EXPECT_FALSE(ModelConfig::from_hf_json(granite).qk_norm_whole || ModelConfig::from_hf_json(granite).post_norms_only);

  // OLMoE (OlmoeConfig; OLMoE-1B-7B-0924's shape): rms_norm_eps 1e-5, whole-projection q / k norms with the
  // usual pre-norms, 64 intermediate_size-wide experts in every layer, top 8 not renormalised by default.
  nlohmann::json olmoe = {{"architectures", {"OlmoeForCausalLM"}}, {"hidden_size", 2048}, {"num_hidden_layers", 2},
                          {"num_attention_heads", 16}, {"intermediate_size", 1024}, {"vocab_size", 50304},
                          {"num_experts", 64}, {"num_experts_per_tok", 8}, {"clip_qkv", nullptr}};
  c = ModelConfig::from_hf_json(olmoe);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_TRUE(c.qk_norm_whole);
  EXPECT_FALSE(c.post_norms_only || c.qk_norm);
  EXPECT_EQ(c.n_experts, 64);
  EXPECT_EQ(c.n_experts_per_tok, 8);
  EXPECT_EQ(c.moe_ffn, 1024);
  EXPECT_EQ(c.ffn, 0);
  EXPECT_FALSE(c.routing.normalize);
  EXPECT_TRUE(c.layer_is_moe(0) && c.layer_is_moe(1));
  olmoe["norm_topk_prob"] = true;
  EXPECT_TRUE(ModelConfig::from_hf_json(olmoe).routing.normalize);
  bad = olmoe;
  bad["clip_qkv"] = 8.0;
  refused(bad, "clip_qkv");
  bad = olmoe;
  bad.erase("num_experts");
  refused(bad, "num_experts");
}

// Qwen2MoeConfig's documented defaults and Qwen1.5-MoE-A2.7B's published config.json values.
TEST(ModelConfig, Qwen2MoeFieldsDefaultsAndRefusals) {
  nlohmann::json j = {{"architectures", {"Qwen2MoeForCausalLM"}}, {"hidden_size", 2048}, {"num_hidden_layers", 3},
                      {"num_attention_heads", 16}, {"num_key_value_heads", 16}, {"intermediate_size", 5632},
                      {"vocab_size", 151936}, {"num_experts", 60}, {"num_experts_per_tok", 4},
                      {"moe_intermediate_size", 1408}, {"shared_expert_intermediate_size", 5632},
                      {"use_sliding_window", false}, {"sliding_window", 32768}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_TRUE(c.qkv_bias);  // qkv_bias defaults to true
  EXPECT_EQ(c.n_experts, 60);
  EXPECT_EQ(c.n_experts_per_tok, 4);
  EXPECT_EQ(c.moe_ffn, 1408);
  EXPECT_EQ(c.shared_expert_ffn, 5632);
  EXPECT_EQ(c.n_shared_experts, 0);
  EXPECT_FALSE(c.routing.normalize);  // norm_topk_prob defaults to false
  EXPECT_EQ(c.sliding_window, 0);
  for (int64_t l = 0; l < 3; ++l) EXPECT_TRUE(c.layer_is_moe(l)) << l;
  j["mlp_only_layers"] = {1};
  j["norm_topk_prob"] = true;
  j["qkv_bias"] = false;
  c = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(c.layer_is_moe(0) && !c.layer_is_moe(1) && c.layer_is_moe(2));
  EXPECT_EQ(c.ffn, 5632);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_FALSE(c.qkv_bias);
  // Plain Qwen2 and Qwen3-MoE have no gated shared expert, whatever their config says.
  auto q3 = j;
  q3["architectures"] = {"Qwen3MoeForCausalLM"};
  EXPECT_EQ(ModelConfig::from_hf_json(q3).shared_expert_ffn, 0);
  auto bad = j;
  bad.erase("shared_expert_intermediate_size");
  refused(bad, "shared_expert_intermediate_size");
  bad = j;
  bad["shared_expert_intermediate_size"] = 0;
  refused(bad, "shared_expert_intermediate_size");
  bad = j;
  bad["use_sliding_window"] = true;
  refused(bad, "use_sliding_window");
}

// ERNIE 4.5 MoE: the weights' floor moe_norm_min is the released 1e-12 (never clamped); a larger one is refused.
TEST(ModelConfig, ErnieMoeNormMin) {
  nlohmann::json j = {{"architectures", {"Ernie4_5_MoeForCausalLM"}}, {"hidden_size", 256},
                      {"num_hidden_layers", 3}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                      {"intermediate_size", 512}, {"vocab_size", 1000}, {"moe_num_experts", 8}, {"moe_k", 2},
                      {"moe_intermediate_size", 64}, {"moe_num_shared_experts", 1}, {"moe_norm_min", 1e-12}};
  EXPECT_EQ(ModelConfig::from_hf_json(j).n_experts, 8);
  j.erase("moe_norm_min");
  EXPECT_EQ(ModelConfig::from_hf_json(j).n_experts_per_tok, 2);
  j["moe_norm_min"] = 0.01;
  refused(j, "moe_norm_min");
}

// quantization_config: DeepSeek-V3's fp8 blocks, compressed-tensors' channel / tensor / block scales (what one
// scale covers), nothing for a plain folder; other methods refused by name.
TEST(ModelConfig, Fp8QuantizationConfigs) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 256}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 512},
                      {"vocab_size", 1000}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.fp8_block_rows, 0);
  EXPECT_EQ(c.fp8_block_cols, 0);
  j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                              {"weight_block_size", {128, 64}}};
  c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.fp8_block_rows, 128);
  EXPECT_EQ(c.fp8_block_cols, 64);
  EXPECT_FALSE(c.fp8_compressed_tensors);
  nlohmann::json w = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"dynamic", false},
                      {"strategy", "channel"}};
  j["quantization_config"] = {{"quant_method", "compressed-tensors"}, {"format", "float-quantized"},
                              {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", w}}}}}};
  c = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(c.fp8_compressed_tensors);
  EXPECT_EQ(c.fp8_block_rows, 1);  // one scale per output row: a block of one row, as long as any row
  EXPECT_GE(c.fp8_block_cols, int64_t(1) << 32);
  j["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "tensor";
  c = ModelConfig::from_hf_json(j);
  EXPECT_GE(c.fp8_block_rows, int64_t(1) << 32);
  EXPECT_GE(c.fp8_block_cols, int64_t(1) << 32);
  j["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "block";
  j["quantization_config"]["config_groups"]["group_0"]["weights"]["block_structure"] = {32, 16};
  c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.fp8_block_rows, 32);
  EXPECT_EQ(c.fp8_block_cols, 16);
  j["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}};
  refused(j, "quant_method \"awq\"");
}

// Glm4MoeConfig's documented defaults and GLM-4.5-Air's published config.json values.
TEST(ModelConfig, Glm4MoeFieldsDefaultsAndRefusals) {
  nlohmann::json j = {{"architectures", {"Glm4MoeForCausalLM"}}, {"hidden_size", 4096}, {"num_hidden_layers", 3},
                      {"num_attention_heads", 96}, {"num_key_value_heads", 8}, {"head_dim", 128},
                      {"intermediate_size", 10944}, {"vocab_size", 151552}, {"n_routed_experts", 128},
                      {"num_experts_per_tok", 8}, {"moe_intermediate_size", 1408}, {"attention_bias", true}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.rotary_dim, 64);  // partial_rotary_factor 0.5 by default
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);  // never on o_proj
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_FALSE(c.layer_is_moe(0));  // first_k_dense_replace 1
  EXPECT_TRUE(c.layer_is_moe(1) && c.layer_is_moe(2));
  EXPECT_EQ(c.ffn, 10944);
  EXPECT_EQ(c.routing.scoring, MoeRouting::Scoring::Sigmoid);
  EXPECT_EQ(c.routing.topk, MoeRouting::TopK::NoauxTc);
  EXPECT_EQ(c.routing.n_group, 1);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_DOUBLE_EQ(c.routing.scaling, 1.0);
  // GLM-4.5-Air as published.
  j["partial_rotary_factor"] = 0.5, j["n_shared_experts"] = 1, j["first_k_dense_replace"] = 2;
  j["routed_scaling_factor"] = 1.0, j["n_group"] = 1, j["topk_group"] = 1, j["use_qk_norm"] = true;
  j["num_nextn_predict_layers"] = 1;
  c = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.layer_is_moe(1));
  EXPECT_EQ(c.nextn_layers, 1);  // what NEXTN drafts with; the main model leaves it unread
  j["n_group"] = 16, j["topk_group"] = 4, j["routed_scaling_factor"] = 2.5;
  c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.routing.n_group, 16);
  EXPECT_EQ(c.routing.topk_group, 4);
  EXPECT_DOUBLE_EQ(c.routing.scaling, 2.5);
  auto bad = j;
  bad["n_group"] = 0;
  refused(bad, "n_group");
  bad = j;
  bad["n_group"] = 3;  // 128 experts
  refused(bad, "n_group");
  bad = j;
  bad["num_nextn_predict_layers"] = -1;
  refused(bad, "num_nextn_predict_layers");
  bad = j;
  bad["partial_rotary_factor"] = 0.3;  // 38.4 -> 38 dims: 19 pairs is fine, 0.01 leaves none
  EXPECT_EQ(ModelConfig::from_hf_json(bad).rotary_dim, 38);
  bad["partial_rotary_factor"] = 0.01;
  refused(bad, "partial_rotary_factor");
  bad = j;
  bad.erase("n_routed_experts");
  refused(bad, "n_routed_experts");
}

// MiniMax-M2's released config.json (MiniMaxAI/MiniMax-M2, with MiniMax-01's leftover keys), M2.5's fp8
// quantization_config, MiniMaxM2Config's defaults for absent keys, and the refusals.
TEST(ModelConfig, MiniMaxM2ReleasedConfigDefaultsAndRefusals) {
  nlohmann::json j = {{"architectures", {"MiniMaxM2ForCausalLM"}}, {"model_type", "minimax_m2"},
                      {"attn_type_list", std::vector<int>(62, 1)}, {"head_dim", 128}, {"hidden_act", "silu"},
                      {"hidden_size", 3072}, {"intermediate_size", 1536}, {"max_position_embeddings", 196608},
                      {"mtp_transformer_layers", 1}, {"num_attention_heads", 48}, {"num_experts_per_tok", 8},
                      {"num_hidden_layers", 62}, {"num_key_value_heads", 8}, {"num_local_experts", 256},
                      {"num_mtp_modules", 3}, {"qk_norm_type", "per_layer"}, {"rms_norm_eps", 1e-6},
                      {"rope_theta", 5000000}, {"rotary_dim", 64}, {"scoring_func", "sigmoid"},
                      {"shared_intermediate_size", 0}, {"tie_word_embeddings", false}, {"use_cache", true},
                      {"use_mtp", true}, {"use_qk_norm", true}, {"use_routing_bias", true}, {"vocab_size", 200064},
                      {"quantization_config", {{"activation_scheme", "dynamic"}, {"fmt", "float8_e4m3fn"},
                                               {"quant_method", "fp8"}, {"weight_block_size", {128, 128}},
                                               {"modules_to_not_convert",
                                                {"gate", "e_score_correction_bias", "lm_head"}}}}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::Mixtral);  // block_sparse_moe.experts.N.w1 / w3 / w2
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rotary_dim, 64);
  EXPECT_TRUE(c.qk_norm_whole);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.n_experts, 256);
  EXPECT_EQ(c.n_experts_per_tok, 8);
  EXPECT_EQ(c.moe_ffn, 1536);
  EXPECT_EQ(c.n_shared_experts, 0);
  EXPECT_TRUE(c.layer_is_moe(0) && c.layer_is_moe(61));
  EXPECT_EQ(c.routing.scoring, MoeRouting::Scoring::Sigmoid);
  EXPECT_EQ(c.routing.topk, MoeRouting::TopK::NoauxTc);
  EXPECT_EQ(c.routing.n_group, 1);
  EXPECT_TRUE(c.routing.normalize);
  EXPECT_DOUBLE_EQ(c.routing.scaling, 1.0);
  EXPECT_EQ(c.fp8_block_rows, 128);
  EXPECT_FALSE(c.tie_embeddings);
  // MiniMaxM2Config's defaults: head_dim 128, rope_theta 5e6, rms_norm_eps 1e-6; no rotary_dim rotates all.
  auto d = j;
  for (const char* k : {"head_dim", "rope_theta", "rms_norm_eps", "rotary_dim", "attn_type_list", "qk_norm_type",
                        "scoring_func", "use_qk_norm", "use_routing_bias", "shared_intermediate_size"})
    d.erase(k);
  c = ModelConfig::from_hf_json(d);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e6);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_EQ(c.rope_dim(), 128);
  EXPECT_TRUE(c.qk_norm_whole);
  // transformers 5: rope_parameters' partial_rotary_factor says the same; a disagreeing one is refused.
  d["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5000000}, {"partial_rotary_factor", 0.5}};
  EXPECT_EQ(ModelConfig::from_hf_json(d).rotary_dim, 64);
  d["rotary_dim"] = 64;
  EXPECT_EQ(ModelConfig::from_hf_json(d).rotary_dim, 64);
  d["rotary_dim"] = 32;
  refused(d, "disagree");
  // MiniMax-01's keys at their M2 values are accepted; any that would change the model is refused by name.
  auto ok = j;
  ok["shared_intermediate_size"] = {0};
  ok["sliding_window"] = nullptr;
  ok["postnorm"] = false;
  ok["use_grouped_topk"] = false;
  ok["routed_scaling_factor"] = 1.0;
  EXPECT_EQ(ModelConfig::from_hf_json(ok).n_experts, 256);
  const std::vector<std::pair<nlohmann::json, std::string>> bads = {
      {{{"attn_type_list", [] { std::vector<int> v(62, 1); v[7] = 0; return v; }()}}, "attn_type_list[7]"},
      {{{"attn_type_list", {1, 1}}}, "attn_type_list"},
      {{{"scoring_func", "softmax"}}, "scoring_func"},
      {{{"use_routing_bias", false}}, "use_routing_bias"},
      {{{"use_grouped_topk", true}}, "use_grouped_topk"},
      {{{"routed_scaling_factor", 2.5}}, "routed_scaling_factor"},
      {{{"use_qk_norm", false}}, "use_qk_norm"},
      {{{"qk_norm_type", "per_head"}}, "qk_norm_type"},
      {{{"shared_intermediate_size", 1024}}, "shared_intermediate_size"},
      {{{"shared_intermediate_size", {0, 512}}}, "shared_intermediate_size"},
      {{{"sliding_window", 4096}}, "sliding_window"},
      {{{"attn_window_size", 4096}}, "attn_window_size"},
      {{{"postnorm", true}}, "postnorm"},
      {{{"rotary_dim", 63}}, "rotary_dim"},
      {{{"rotary_dim", 256}}, "rotary_dim"},
      {{{"num_experts_per_tok", 257}}, "num_experts_per_tok"},
  };
  for (const auto& [patch, what] : bads) {
    auto bad = j;
    bad.update(patch);
    refused(bad, what);
  }
  auto bad = j;
  bad.erase("num_local_experts");
  refused(bad, "num_local_experts");
}

// Olmo3Config's defaults (sliding_window 4096, layer_types sliding but every fourth), OLMo 2's layers, rope_scaling
// on the full layers only (the sliding ones rotate plainly with rope_theta), transformers 5's per-layer-type
// rope_parameters, and the refusals.
TEST(ModelConfig, Olmo3SlidingLayersAndRope) {
  nlohmann::json j = {{"architectures", {"Olmo3ForCausalLM"}}, {"hidden_size", 4096}, {"num_hidden_layers", 8},
                      {"num_attention_heads", 32}, {"num_key_value_heads", 32}, {"intermediate_size", 11008},
                      {"vocab_size", 100278}, {"max_position_embeddings", 65536}, {"rope_theta", 500000}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(c.qk_norm_whole);
  EXPECT_TRUE(c.post_norms_only);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.sliding_window, 4096);
  for (int64_t l = 0; l < 8; ++l) EXPECT_EQ(c.layer_is_sliding(l), (l + 1) % 4 != 0) << l;
  EXPECT_EQ(c.rope_local_theta, 0);  // no rope_scaling: one RoPE for every layer
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8.0}, {"original_max_position_embeddings", 8192},
                       {"attention_factor", 1.2079441541679836}, {"beta_fast", 32}, {"beta_slow", 1}};
  j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
                      "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"};
  c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(c.rope_local_theta, 500000.0);  // the sliding layers: plain RoPE, the same base
  EXPECT_TRUE(c.layer_is_sliding(0) && !c.layer_is_sliding(1) && c.layer_is_sliding(2) && !c.layer_is_sliding(7));
  // transformers 5: one rope_parameters per layer type.
  auto t5 = j;
  t5.erase("rope_scaling");
  t5.erase("rope_theta");
  t5["rope_parameters"] = {{"full_attention", {{"rope_type", "yarn"}, {"rope_theta", 500000}, {"factor", 8.0},
                                               {"original_max_position_embeddings", 8192}}},
                           {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000}}}};
  c = ModelConfig::from_hf_json(t5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(c.rope_local_theta, 10000.0);
  t5["rope_parameters"]["sliding_attention"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  refused(t5, "sliding_attention");
  j["sliding_window"] = nullptr;  // no window at all
  EXPECT_FALSE(ModelConfig::from_hf_json(j).layer_is_sliding(0));
  auto bad = j;
  bad["sliding_window"] = -1;
  refused(bad, "sliding_window");
  bad = j;
  bad["layer_types"][3] = "chunked_attention";
  refused(bad, "layer_types[3]");
  bad = j;
  bad["layer_types"] = {"full_attention"};
  refused(bad, "layer_types");
}

// Exaone4Config's defaults and the patterns its configs use: "LLLG" (the 32B), layer_types, a period, and no window
// (the 1.2B: every layer full and rotated); the full layers of a windowed model are unrotated.
TEST(ModelConfig, Exaone4PatternsAndGlobalNoPE) {
  nlohmann::json j = {{"architectures", {"Exaone4ForCausalLM"}}, {"hidden_size", 2048}, {"num_hidden_layers", 8},
                      {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"intermediate_size", 4096},
                      {"vocab_size", 102400}, {"max_position_embeddings", 65536}, {"sliding_window_pattern", "LLLG"},
                      {"rope_theta", 1000000}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(c.qk_norm);  // per head
  EXPECT_FALSE(c.qk_norm_whole);
  EXPECT_TRUE(c.post_norms_only);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.sliding_window, 4096);
  for (int64_t l = 0; l < 8; ++l) {
    EXPECT_EQ(c.layer_is_sliding(l), l % 4 != 3) << l;
    EXPECT_EQ(c.layer_has_rope(l), l % 4 != 3) << l;  // global NoPE
  }
  j["sliding_window_pattern"] = 2;
  c = ModelConfig::from_hf_json(j);
  EXPECT_TRUE(c.layer_is_sliding(0) && !c.layer_is_sliding(1) && !c.layer_has_rope(1));
  j["layer_types"] = std::vector<std::string>(8, "full_attention");
  j["layer_types"][5] = "sliding_attention";
  c = ModelConfig::from_hf_json(j);  // layer_types first
  EXPECT_TRUE(c.layer_is_sliding(5) && c.layer_has_rope(5) && !c.layer_is_sliding(4) && !c.layer_has_rope(4));
  j.erase("layer_types");
  j["sliding_window"] = nullptr;  // the 1.2B: no window, every layer rotates
  c = ModelConfig::from_hf_json(j);
  for (int64_t l = 0; l < 8; ++l) EXPECT_TRUE(!c.layer_is_sliding(l) && c.layer_has_rope(l)) << l;
  auto bad = j;
  bad["sliding_window"] = 4096;
  bad["sliding_window_pattern"] = "LLXG";
  refused(bad, "sliding_window_pattern");
  bad["sliding_window_pattern"] = 0;
  refused(bad, "sliding_window_pattern");
  bad["sliding_window"] = -2;
  refused(bad, "sliding_window");
}

// Llama 4 Scout as released (Llama4ForConditionalGeneration; its text_config's keys, attn_temperature_tuning 4 and
// all), Maverick's differences (use_qk_norm false, experts every second layer), Llama4TextConfig's defaults, refusals.
TEST(ModelConfig, Llama4ScoutAndMaverick) {
  nlohmann::json no_rope = nlohmann::json::array(), moe = nlohmann::json::array();
  for (int l = 0; l < 48; ++l) no_rope.push_back(l % 4 == 3 ? 0 : 1), moe.push_back(l);
  nlohmann::json text = {{"attention_bias", false}, {"attention_chunk_size", 8192}, {"attention_dropout", 0.0},
                         {"attn_scale", 0.1}, {"attn_temperature_tuning", 4}, {"bos_token_id", 200000},
                         {"eos_token_id", {200001, 200007, 200008}}, {"floor_scale", 8192}, {"for_llm_compressor", false},
                         {"head_dim", 128}, {"hidden_act", "silu"}, {"hidden_size", 5120}, {"interleave_moe_layer_step", 1},
                         {"intermediate_size", 8192}, {"intermediate_size_mlp", 16384},
                         {"max_position_embeddings", 262144}, {"model_type", "llama4_text"}, {"moe_layers", moe},
                         {"no_rope_layers", no_rope}, {"num_attention_heads", 40}, {"num_experts_per_tok", 1},
                         {"num_hidden_layers", 48}, {"num_key_value_heads", 8}, {"num_local_experts", 16},
                         {"pad_token_id", 200018}, {"rms_norm_eps", 1e-5},
                         {"rope_scaling", {{"factor", 8.0}, {"high_freq_factor", 4.0}, {"low_freq_factor", 1.0},
                                           {"original_max_position_embeddings", 8192}, {"rope_type", "llama3"}}},
                         {"rope_theta", 500000.0}, {"torch_dtype", "bfloat16"}, {"use_qk_norm", true},
                         {"vocab_size", 202048}};
  nlohmann::json mm = {{"architectures", {"Llama4ForConditionalGeneration"}}, {"model_type", "llama4"},
                       {"text_config", text}, {"tie_word_embeddings", false},
                       {"vision_config", {{"hidden_size", 1408}, {"model_type", "llama4_vision_model"}}}};
  ModelConfig c = ModelConfig::from_hf_json(mm);
  EXPECT_EQ(c.arch_name, "Llama4ForConditionalGeneration");
  EXPECT_FALSE(c.vision.enabled());
  EXPECT_EQ(c.n_experts, 16);
  EXPECT_EQ(c.moe_ffn, 8192);
  EXPECT_EQ(c.ffn, 16384);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_TRUE(c.moe_weight_input && c.rope_interleaved && c.qk_l2_norm && c.attn_chunked);
  EXPECT_EQ(c.routing.scoring, MoeRouting::Scoring::Sigmoid);
  EXPECT_FALSE(c.routing.normalize);
  EXPECT_EQ(c.sliding_window, 8192);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_DOUBLE_EQ(c.q_temp_beta, 0.1);
  EXPECT_DOUBLE_EQ(c.q_temp_period, 8192);
  EXPECT_DOUBLE_EQ(c.q_temp_offset, 1);
  EXPECT_TRUE(c.q_temp_nope_only);
  EXPECT_EQ(c.bos_id, 200000);
  EXPECT_EQ(c.eos_ids.size(), 3u);
  for (int64_t l = 0; l < 48; ++l) {
    EXPECT_TRUE(c.layer_is_moe(l)) << l;
    EXPECT_EQ(c.layer_has_rope(l), l % 4 != 3) << l;
    EXPECT_EQ(c.layer_is_sliding(l), l % 4 != 3) << l;  // the rotated layers are the chunked ones
  }
  // Maverick: no q / k norms, experts every second layer (interleave_moe_layer_step 2, moe_layers 1, 3, ...).
  nlohmann::json mav = text;
  mav["use_qk_norm"] = false;
  mav["num_local_experts"] = 128;
  mav["interleave_moe_layer_step"] = 2;
  mav["moe_layers"] = nlohmann::json::array();
  for (int l = 1; l < 48; l += 2) mav["moe_layers"].push_back(l);
  mav["architectures"] = {"Llama4ForCausalLM"};
  c = ModelConfig::from_hf_json(mav);
  EXPECT_FALSE(c.qk_l2_norm);
  for (int64_t l = 0; l < 48; ++l) EXPECT_EQ(c.layer_is_moe(l), l % 2 == 1) << l;
  mav.erase("moe_layers");  // from interleave_moe_layer_step
  c = ModelConfig::from_hf_json(mav);
  for (int64_t l = 0; l < 48; ++l) EXPECT_EQ(c.layer_is_moe(l), l % 2 == 1) << l;
  // Llama4TextConfig's defaults: Scout's shape, every fourth layer NoPE and the others chunked.
  c = ModelConfig::from_hf_json({{"architectures", {"Llama4ForCausalLM"}}});
  EXPECT_EQ(c.hidden, 5120);
  EXPECT_EQ(c.n_layers, 48);
  EXPECT_EQ(c.vocab, 202048);
  EXPECT_EQ(c.sliding_window, 8192);
  EXPECT_TRUE(c.qk_l2_norm);
  EXPECT_DOUBLE_EQ(c.q_temp_beta, 0.1);
  EXPECT_TRUE(c.layer_has_rope(2) && !c.layer_has_rope(3) && c.layer_is_sliding(2) && !c.layer_is_sliding(3));
  EXPECT_EQ(ModelConfig::from_hf_json({{"architectures", {"Llama4ForCausalLM"}}, {"attn_temperature_tuning", false}})
                .q_temp_beta,
            0);
  // layer_types over no_rope_layers' default, all full: no chunks (attention_chunk_size then unused).
  nlohmann::json full = {{"architectures", {"Llama4ForCausalLM"}}, {"num_hidden_layers", 4},
                         {"layer_types", {"full_attention", "full_attention", "full_attention", "full_attention"}},
                         {"attention_chunk_size", nullptr}};
  c = ModelConfig::from_hf_json(full);
  EXPECT_FALSE(c.attn_chunked);
  for (int64_t l = 0; l < 4; ++l) EXPECT_FALSE(c.layer_is_sliding(l));
  auto bad = full;
  bad["layer_types"][0] = "chunked_attention";
  refused(bad, "attention_chunk_size");
  bad["layer_types"][0] = "sliding_attention";
  refused(bad, "layer_types[0]");
  bad = mm;
  bad["text_config"]["moe_layers"].push_back(48);
  refused(bad, "moe_layers");
  bad = mm;
  bad["text_config"]["no_rope_layers"] = {1, 1, 0};
  refused(bad, "no_rope_layers");
  bad = mm;
  bad["text_config"]["floor_scale"] = 0;
  refused(bad, "floor_scale");
  bad = mm;
  bad["text_config"]["attn_temperature_tuning"] = "yes";
  refused(bad, "attn_temperature_tuning");
  bad = mm;
  bad["text_config"]["model_type"] = "llama4_vision_model";
  refused(bad, "llama4_vision_model");
  bad = mm;
  bad["text_config"]["interleave_moe_layer_step"] = 0;
  bad["text_config"].erase("moe_layers");
  refused(bad, "interleave_moe_layer_step");
}

// Ministral 3: transformers 5's rope_parameters with llama_4_scaling_beta (the queries' temperature, its period the
// YaRN original context), Ministral3Config's defaults without them, the Mistral3ForConditionalGeneration wrapper.
TEST(ModelConfig, Ministral3QueryTemperature) {
  nlohmann::json j = {{"architectures", {"Ministral3ForCausalLM"}}, {"hidden_size", 4096}, {"num_hidden_layers", 34},
                      {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"intermediate_size", 14336},
                      {"vocab_size", 131072}};
  ModelConfig c = ModelConfig::from_hf_json(j);  // Ministral3Config's defaults
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 16.0);
  EXPECT_DOUBLE_EQ(c.q_temp_beta, 0.1);
  EXPECT_DOUBLE_EQ(c.q_temp_period, 16384.0);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_pos, 262144);
  j["rope_parameters"] = {{"type", "yarn"}, {"rope_theta", 1000000.0}, {"factor", 16.0},
                          {"original_max_position_embeddings", 16384}, {"max_position_embeddings", 262144},
                          {"beta_fast", 32.0}, {"beta_slow", 1.0}, {"mscale", 1.0}, {"mscale_all_dim", 1.0},
                          {"llama_4_scaling_beta", 0.2}};
  c = ModelConfig::from_hf_json(j);
  EXPECT_DOUBLE_EQ(c.q_temp_beta, 0.2);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 1.0);
  // The multimodal wrapper's text_config.
  nlohmann::json mm = {{"architectures", {"Mistral3ForConditionalGeneration"}}, {"text_config", j}};
  mm["text_config"]["model_type"] = "ministral3";
  mm["text_config"].erase("architectures");
  const ModelConfig w = ModelConfig::from_hf_json(mm);
  EXPECT_DOUBLE_EQ(w.q_temp_beta, 0.2);
  EXPECT_EQ(w.arch_name, "Mistral3ForConditionalGeneration");
  auto bad = j;
  bad["rope_parameters"].erase("llama_4_scaling_beta");
  refused(bad, "llama_4_scaling_beta");
  bad = j;
  bad["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}, {"llama_4_scaling_beta", 0.1}};
  refused(bad, "yarn");
  bad = j;
  bad["rope_parameters"]["llama_4_scaling_beta"] = -1;
  refused(bad, "llama_4_scaling_beta");
  mm["text_config"]["model_type"] = "ministral4";
  refused(mm, "ministral4");
}

// SeedOssConfig's defaults (q/k/v biases on, o_proj's off, head_dim 128) and Seed-OSS-36B's shape.
TEST(ModelConfig, SeedOssBiasesAndHeadDim) {
  nlohmann::json j = {{"architectures", {"SeedOssForCausalLM"}}, {"hidden_size", 5120}, {"num_hidden_layers", 64},
                      {"num_attention_heads", 80}, {"num_key_value_heads", 8}, {"intermediate_size", 27648},
                      {"vocab_size", 155136}, {"max_position_embeddings", 524288}, {"rope_theta", 10000000.0}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.head_dim, 128);  // not 5120 / 80
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e7);
  EXPECT_EQ(c.sliding_window, 0);
  j["attention_bias"] = false;
  j["attention_out_bias"] = true;
  c = ModelConfig::from_hf_json(j);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  j["mlp_bias"] = true;
  refused(j, "mlp_bias");
}

// Glm4Config's documented defaults (GLM-4-9B-0414 names most of them).
TEST(ModelConfig, Glm4Defaults) {
  nlohmann::json j = {{"architectures", {"Glm4ForCausalLM"}}, {"hidden_size", 4096}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 32}, {"num_key_value_heads", 2}, {"intermediate_size", 13696},
                      {"vocab_size", 151552}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rotary_dim, 64);
  EXPECT_TRUE(c.rope_interleaved);
  EXPECT_TRUE(c.sandwich_norms);
  EXPECT_FLOAT_EQ(c.norm_offset, 0.0f);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1.5625e-7);
  EXPECT_EQ(c.sliding_window, 0);
  j["attention_bias"] = false, j["rms_norm_eps"] = 1e-5, j["head_dim"] = 64, j["partial_rotary_factor"] = 1.0;
  c = ModelConfig::from_hf_json(j);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.rope_dim(), 64);
}

// Mistral3Config's text_config read with MistralConfig's documented defaults; Mistral-Small-3.1's
// published text_config values.
TEST(ModelConfig, Mistral3TextConfig) {
  nlohmann::json text = {{"model_type", "mistral"}, {"hidden_size", 5120}, {"head_dim", 128},
                         {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"intermediate_size", 32768},
                         {"num_hidden_layers", 40}, {"vocab_size", 131072}, {"max_position_embeddings", 131072},
                         {"rms_norm_eps", 1e-05}, {"rope_theta", 1000000000.0}, {"sliding_window", nullptr}};
  nlohmann::json j = {{"architectures", {"Mistral3ForConditionalGeneration"}}, {"model_type", "mistral3"},
                      {"text_config", text}, {"vision_config", {{"model_type", "pixtral"}}},
                      {"torch_dtype", "bfloat16"}};
  ModelConfig c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.arch_name, "Mistral3ForConditionalGeneration");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_layers, 40);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e9);
  EXPECT_FALSE(c.vision.enabled());
  ASSERT_EQ(c.eos_ids.size(), 1u);  // MistralConfig's bos 1 / eos 2 when neither level names them
  EXPECT_EQ(c.eos_ids[0], 2);
  EXPECT_EQ(c.bos_id, 1);
  // Left out: MistralConfig's defaults (a 4096 window, theta 1e4, rms 1e-6, 8 KV heads).
  for (const char* k : {"sliding_window", "rope_theta", "rms_norm_eps", "num_key_value_heads"}) j["text_config"].erase(k);
  j["text_config"]["max_position_embeddings"] = 8192;
  c = ModelConfig::from_hf_json(j);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_EQ(c.n_kv_heads, 8);
  auto bad = j;
  bad["text_config"]["model_type"] = "ministral";
  refused(bad, "ministral");
  bad = j;
  bad.erase("text_config");
  refused(bad, "text_config");
}

TEST(Llama2c, TruncatedCheckpointIsAnError) {
  auto d = tmpdir("l2c");
  int32_t hdr[7] = {64, 172, 5, 8, 4, 512, 512};
  std::ofstream out(d / "m.bin", std::ios::binary);
  out.write(reinterpret_cast<char*>(hdr), sizeof hdr);
  std::string some(1000, '\0');
  out << some;
  out.close();
  try {
    Model::load((d / "m.bin").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  std::ofstream bad(d / "b.bin", std::ios::binary);
  int32_t h2[7] = {-5, 1, 1, 1, 1, 1, 1};
  bad.write(reinterpret_cast<char*>(h2), sizeof h2);
  bad.close();
  EXPECT_THROW(Model::load((d / "b.bin").string()), Error);
  // dim 6 over 2 heads: a head of 3 dimensions has no RoPE pairs (found by fuzz_config).
  std::ofstream odd(d / "o.bin", std::ios::binary);
  int32_t h3[7] = {6, 16, 1, 2, 2, 8, 8};
  odd.write(reinterpret_cast<char*>(h3), sizeof h3);
  std::string weights(100000, '\0');
  odd << weights;
  odd.close();
  try {
    Model::load((d / "o.bin").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be even"), std::string::npos) << e.what();
  }
}

}  // namespace
