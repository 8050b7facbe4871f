// Times @huggingface/tokenizers (pure JS) encoding a prompt file; called by tokenizer_bench.
// usage: node tokenizer_npm_bench.mjs NODE_DIR SHARED_DIR PROMPT_FILE
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [nodeDir, shared, promptPath] = process.argv.slice(2).map((p) => path.resolve(p));
const require = createRequire(path.join(nodeDir, "package.json"));
const mod = await import(require.resolve("@huggingface/tokenizers"));
const Tokenizer = mod.Tokenizer ?? mod.default?.Tokenizer;
const text = fs.readFileSync(promptPath, "utf8");
for (const name of ["qwen3", "llama3"]) {
  const dir = path.join(shared, "tokenizers", name);
  const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
                            JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
  let ids = tok.encode(text, { add_special_tokens: false }).ids;  // warm-up (JIT, caches)
  const n = 20;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) ids = tok.encode(text, { add_special_tokens: false }).ids;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / n;
  console.log(`  js ${name}_32KB: ${ms.toFixed(3)} ms per prompt, ${ids.length} tokens, ${(ids.length / ms * 1000).toFixed(0)} tokens/s`);
}
