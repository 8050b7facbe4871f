// JSON Schema compiler against an independent validator: random schemas (a fresh seed each run
// unless CONSTRAIN_SEED is set, so the corpus is never tuned to the compiler) plus the real-world
// tool schemas in fixtures/, compiled by constrain_sample, which draws random accepted outputs;
// every output must parse and validate under ajv (draft 2020-12, ajv-formats in full mode).
// Schemas that must be refused are checked to be refused with a message naming the construct.
//
//   node schema_corpus.mjs <constrain_sample> <tests/node dir> [random schema count]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { schemaGenerator } from './schema_gen.mjs';

const [sampler, nodeDir, countArg] = process.argv.slice(2);
const require = createRequire(path.resolve(nodeDir, 'package.json'));
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const seed = Number(process.env.CONSTRAIN_SEED ?? (Date.now() % 1000000007));
console.log(`seed ${seed} (CONSTRAIN_SEED=${seed} reproduces this run)`);
const nextSchema = schemaGenerator(seed);

const count = Number(countArg ?? 150);
const cases = [];
for (let i = 0; i < count; ++i) cases.push({ id: `random ${i}`, schema: nextSchema() });
const tools = JSON.parse(readFileSync(new URL('./fixtures/tool_schemas.json', import.meta.url)));
// OpenAI's documented Structured Outputs subset, every keyword of it at once.
const fmt = (f) => ({ type: 'string', format: f });
cases.push({ id: 'openai subset', schema: {
  type: 'object', additionalProperties: false,
  properties: {
    dt: fmt('date-time'), t: fmt('time'), d: fmt('date'), dur: fmt('duration'), email: fmt('email'),
    host: fmt('hostname'), v4: fmt('ipv4'), v6: fmt('ipv6'), id: fmt('uuid'),
    code: { type: 'string', pattern: '^[A-Z]{3}$' }, name: { type: 'string', minLength: 2, maxLength: 8 },
    score: { type: 'number', minimum: -1.5, maximum: 2 }, frac: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
    step: { type: 'integer', multipleOf: 5, minimum: 0, maximum: 100 },
    list: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 3 },
    either: { anyOf: [{ type: 'integer' }, { $ref: '#/$defs/node' }] },
    tree: { $ref: '#/$defs/node' },
  },
  required: ['dt', 't', 'd', 'dur', 'email', 'host', 'v4', 'v6', 'id', 'code', 'name', 'score', 'frac', 'step', 'list', 'either', 'tree'],
  $defs: { node: { type: 'object', additionalProperties: false, required: ['v', 'kids'],
                   properties: { v: { type: 'string', maxLength: 3 }, kids: { type: 'array', maxItems: 2, items: { $ref: '#/$defs/node' } } } } },
} });
for (const t of tools) cases.push({ id: `tool ${t.function.name}`, schema: t.function.parameters });

// Refused, with the construct named in the message.
const refused = [
  [{ type: 'object', properties: { x: { not: { type: 'string' } } } }, "'not'"],
  [{ if: { type: 'string' }, then: { minLength: 2 } }, "'if'"],
  [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, "'uniqueItems'"],
  [{ type: 'array', contains: { type: 'string' } }, "'contains'"],
  [{ type: 'object', patternProperties: { '^x': { type: 'string' } } }, "'patternProperties'"],
  [{ type: 'number', multipleOf: 0.01 }, "'multipleOf'"],
  [{ type: 'string', format: 'jwt' }, "format 'jwt'"],
  [{ type: 'integer', multipleOf: 2.5 }, "'multipleOf'"],
  [{ type: 'object', propertyNames: { minimum: 1 } }, "'minimum' in 'propertyNames'"],
  [{ oneOf: [{ type: 'number' }, { type: 'integer' }] }, "'oneOf'"],
  [{ type: 'string', pattern: '(a)\\1' }, 'backreferences'],
  [{ type: 'string', pattern: '(?=a)b' }, 'lookaround'],
  [{ $ref: 'https://example.com/schema.json' }, 'local $refs'],
  [{ type: 'integer', minimum: 5, maximum: 4 }, 'no integer'],
  [{ type: 'number', exclusiveMinimum: 0.5, exclusiveMaximum: 0.5 }, 'no number'],
  [{ type: 'object', properties: { a: { type: 'string' } }, required: ['b'], additionalProperties: false }, "'b'"],
  [false, "'false'"],
];

const input = cases.map((c, i) => JSON.stringify({ id: i, kind: 'json_schema', text: JSON.stringify(c.schema), n: 4, seed: seed + i }))
  .concat(refused.map(([s], i) => JSON.stringify({ id: 100000 + i, kind: 'json_schema', text: JSON.stringify(s), n: 1 })))
  .concat([JSON.stringify({ id: 200000, kind: 'json_object', n: 20, seed })]).join('\n') + '\n';
const run = spawnSync(sampler, [], { input, maxBuffer: 1 << 28 });
if (run.status !== 0) throw new Error(`constrain_sample failed: ${run.stderr}`);
const results = new Map(run.stdout.toString().trim().split('\n').map((l) => { const r = JSON.parse(l); return [r.id, r]; }));

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
let failures = 0, outputs = 0, incomplete = 0;
const fail = (msg) => { ++failures; if (failures <= 20) console.log(`FAIL ${msg}`); };
cases.forEach((c, i) => {
  const r = results.get(i);
  if (r.error) return fail(`${c.id}: refused: ${r.error}\n  schema ${JSON.stringify(c.schema)}`);
  const validate = ajv.compile(c.schema);
  incomplete += r.incomplete;
  for (const o of r.outputs) {
    ++outputs;
    let v;
    try { v = JSON.parse(o); } catch (e) { fail(`${c.id}: not JSON: ${JSON.stringify(o)}`); continue; }
    if (!validate(v)) fail(`${c.id}: ${JSON.stringify(o)} fails: ${ajv.errorsText(validate.errors)}\n  schema ${JSON.stringify(c.schema)}`);
  }
});
refused.forEach(([s, needle], i) => {
  const r = results.get(100000 + i);
  if (!r.error) fail(`accepted a schema it must refuse: ${JSON.stringify(s)}`);
  else if (!r.error.includes(needle)) fail(`refusal of ${JSON.stringify(s)} does not name ${needle}: ${r.error}`);
});
for (const o of results.get(200000).outputs) {
  ++outputs;
  let v;
  try { v = JSON.parse(o); } catch (e) { fail(`json_object: not JSON: ${JSON.stringify(o)}`); continue; }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`json_object: not an object: ${o}`);
}
console.log(`${cases.length} schemas (${count} random, ${tools.length} tools), ${outputs} outputs validated, ` +
            `${incomplete} draws cut off, ${refused.length} refusals checked, ${failures} failures`);
if (incomplete > outputs / 10) fail(`too many draws did not finish (${incomplete})`);
process.exit(failures ? 1 : 0);
