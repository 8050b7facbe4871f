#include "constrain/harmony_grammar.h"

#include "core/check.h"

namespace dpserve::constrain {

namespace {

// A message body: any text; a special token (which ends it) is not text.
ExprId body_text(Grammar& g) { return g.star(g.chars(CodepointSet::any())); }

ExprId side_message(Grammar& g, std::string_view channel) {
  return g.seq({g.special_token("<|channel|>"), g.literal(channel), g.special_token("<|message|>"), body_text(g),
                g.special_token("<|end|>"), g.special_token("<|start|>"), g.literal("assistant")});
}

ExprId constrain_json(Grammar& g) { return g.seq({g.literal(" "), g.special_token("<|constrain|>"), g.literal("json")}); }

}  // namespace

ExprId harmony_side_messages(Grammar& g) {
  return g.star(g.alt({side_message(g, "analysis"), side_message(g, "commentary")}));
}

ExprId harmony_final_header(Grammar& g) {
  return g.seq({g.special_token("<|channel|>"), g.literal("final"), g.optional(constrain_json(g)),
                g.special_token("<|message|>")});
}

ExprId harmony_stop(Grammar& g, std::string_view tag) { return g.optional(g.special_token(tag)); }

ExprId harmony_call(Grammar& g, const std::string& name, ExprId args) {
  if (name.empty() || name.find_first_of(" \t\r\n<") != std::string::npos)
    fail("tool '{}': the name cannot be written in a harmony header", name);
  const std::string to = "to=functions." + name;
  const ExprId channel_form = g.seq({g.special_token("<|channel|>"), g.literal("commentary " + to),
                                     g.optional(constrain_json(g)), g.special_token("<|message|>"), args});
  const ExprId role_form =
      g.seq({g.literal(" " + to), g.special_token("<|channel|>"), g.literal("commentary"),
             g.optional(g.alt({g.literal(" json"), constrain_json(g)})), g.special_token("<|message|>"), args});
  return g.seq({g.alt({channel_form, role_form}), harmony_stop(g, "<|call|>")});
}

}  // namespace dpserve::constrain
