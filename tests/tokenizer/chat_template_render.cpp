// Test helper: renders a batch of chat-template cases with dpserve's interpreter.
// Input: a JSON file [{"template": ..., "context": {...}}, ...]; output: [{"ok": text} | {"error": msg}].
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/chat_template.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: chat_template_render CASES.json\n");
    return 2;
  }
  std::ifstream f(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const auto cases = nlohmann::ordered_json::parse(ss.str());
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& c : cases) {
    nlohmann::ordered_json r;
    try {
      r["ok"] = dpserve::render_chat_template(c.at("template").get<std::string>(), c.at("context"));
    } catch (const dpserve::Error& e) {
      r["error"] = e.what();
    }
    out.push_back(r);
  }
  std::cout << out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return 0;
}
