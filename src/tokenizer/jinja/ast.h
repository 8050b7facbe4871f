// Syntax tree of a parsed Jinja template (the subset chat templates use).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral, kName, kAttr, kItem, kSlice, kCall, kFilter, kTest, kNeg, kNot, kBinary, kAnd, kOr,
    kCompare, kTernary, kList, kDict, kTuple
  };
  Kind kind;
  int line = 0;
  Value value;                     // literal
  std::string name;                // name / attribute / filter / test / binary op
  std::vector<ExprPtr> args;       // operands, call / filter / test args, list items, dict k,v pairs
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;    // comparison operators
  bool negated = false;            // "is not"
  ExprPtr a, b, c;                 // object / left / condition ...; slice: start, stop, step in args (null ok)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue };
  Kind kind;
  int line = 0;
  std::string text;                         // text; macro name; set target name
  std::string attr;                         // set ns.attr
  std::vector<std::string> targets;         // for / set unpack targets; macro params
  std::vector<ExprPtr> defaults;            // macro param defaults (null when none)
  ExprPtr expr;                             // output / for iterable / set value
  ExprPtr filter;                           // for ... if filter
  std::vector<std::pair<ExprPtr, Body>> branches;  // if / elif
  Body body, else_body;
};

// Parses with Hugging Face's chat-template settings (trim_blocks, lstrip_blocks, loop controls).
// Throws dpserve::Error naming the unsupported construct and line.
Body parse_template(const std::string& source);

}  // namespace dpserve::jinja
