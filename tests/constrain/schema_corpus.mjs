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

const [sampler, nodeDir, countArg] = process.argv.slice(2);
const require = createRequire(path.resolve(nodeDir, 'package.json'));
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const seed = Number(process.env.CONSTRAIN_SEED ?? (Date.now() % 1000000007));
console.log(`seed ${seed} (CONSTRAIN_SEED=${seed} reproduces this run)`);
let state = seed >>> 0;
const rand = () => {  // mulberry32
  state = (state + 0x6D2B79F5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (a, b) => a + Math.floor(rand() * (b - a + 1));
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const chance = (p) => rand() < p;

const NAMES = ['id', 'name', 'value', 'items', 'a b', 'quo"te', 'back\\slash', 'ünïcode', 'emoji😀', '', 'ключ',
  'type', 'count', 'tags', 'nested', 'x', 'y', 'enabled', 'price', 'when'];
const PATTERNS = ['^[a-z]{2,6}$', '^[A-Z][a-z]+$', '^\\d{3}-\\d{4}$', '^(foo|bar|baz)+$', 'ab+c', '^[0-9a-f]{8}$',
  '^\\w+@\\w+\\.com$', '^(\\+\\d{1,3} )?\\d{6,10}$', 'x', '^[^\\s"]{1,5}$', '^[a-z]+(-[a-z]+)*$', '^.{0,3}$',
  '^[\\u00e0-\\u00ff]{2}$', '^\\S+$', '^[\\s\\S]{2}$'];
const FORMATS = ['date', 'time', 'date-time', 'email', 'uuid', 'ipv4', 'hostname', 'uri', 'duration'];
const WORDS = ['red', 'green', 'blue', 'a"b', 'c\\d', 'é', '日本', '', 'line\nbreak', 'tab\t'];

function genString() {
  switch (int(0, 5)) {
    case 0: return { type: 'string' };
    case 1: { const mn = int(0, 4); return { type: 'string', minLength: mn, maxLength: mn + int(0, 8) }; }
    case 2: return { type: 'string', enum: [...new Set([pick(WORDS), pick(WORDS), pick(WORDS)])] };
    case 3: return { const: pick(WORDS) };
    case 4: return { type: 'string', pattern: pick(PATTERNS) };
    default: return { type: 'string', format: pick(FORMATS) };
  }
}

function genNumber(integer) {
  const s = { type: integer ? 'integer' : 'number' };
  const frac = () => (integer || chance(0.5) ? 0 : pick([0.25, 0.5, 0.75]));
  if (chance(0.5)) s[chance(0.7) ? 'minimum' : 'exclusiveMinimum'] = int(-50, 50) + frac();
  if (chance(0.5)) {
    const lo = s.minimum ?? s.exclusiveMinimum ?? -100;
    s[chance(0.7) ? 'maximum' : 'exclusiveMaximum'] = Math.ceil(lo) + int(2, 1000) + frac();
  }
  return s;
}

let defs = {};
function gen(depth) {
  const leaf = depth >= 3 || chance(0.45);
  if (leaf) {
    switch (int(0, 7)) {
      case 0: case 1: return genString();
      case 2: return genNumber(true);
      case 3: return genNumber(false);
      case 4: return { type: 'boolean' };
      case 5: return { type: 'null' };
      case 6: return { enum: [1, 'a', null, true, 2.5, { k: [1] }, [1, 'x']].filter(() => chance(0.5)).concat([0]) };
      default: return { type: pick([['string', 'null'], ['integer', 'boolean'], ['number', 'string']]) };
    }
  }
  switch (int(0, 7)) {
    case 0: case 1: case 2: {
      const props = {};
      const n = int(0, 5);
      for (let i = 0; i < n; ++i) props[pick(NAMES)] = gen(depth + 1);
      const s = { type: 'object', properties: props };
      const req = Object.keys(props).filter(() => chance(0.5));
      if (req.length) s.required = req;
      const ap = int(0, 3);
      if (ap === 1) s.additionalProperties = false;
      if (ap === 2) s.additionalProperties = true;
      if (ap === 3) s.additionalProperties = gen(depth + 1);
      return s;
    }
    case 3: {
      if (chance(0.3)) {
        const k = int(1, 3);
        const s = { type: 'array', prefixItems: Array.from({ length: k }, () => gen(depth + 1)) };
        if (chance(0.5)) s.items = false; else s.items = gen(depth + 1);
        s.minItems = int(0, k);
        return s;
      }
      const s = { type: 'array', items: gen(depth + 1) };
      if (chance(0.5)) s.minItems = int(0, 2);
      if (chance(0.5)) s.maxItems = (s.minItems ?? 0) + int(0, 3);
      return s;
    }
    case 4: return { anyOf: Array.from({ length: int(2, 3) }, () => gen(depth + 1)) };
    case 5: {
      if (chance(0.5)) return { oneOf: [{ type: 'string' }, { type: 'integer' }, { type: 'null' }].filter(() => chance(0.7)).concat([{ type: 'boolean' }]) };
      const branch = (tag) => ({ type: 'object', properties: { kind: { const: tag }, v: gen(depth + 1) }, required: ['kind'] });
      return { oneOf: [branch('a'), branch('b'), branch('c')].slice(0, int(2, 3)) };
    }
    case 6: {
      const name = `d${Object.keys(defs).length}`;
      defs[name] = null;  // reserved before the body, which may add definitions of its own
      defs[name] = gen(depth + 1);
      return { $ref: `#/$defs/${name}`, description: 'a reference' };
    }
    default: {
      const a = { type: 'object', properties: { p: genNumber(true), q: genString() }, required: ['p'] };
      const b = { type: 'object', properties: { p: { minimum: -1000 }, r: { type: 'boolean' } } };
      return { allOf: [a, b] };
    }
  }
}

const count = Number(countArg ?? 150);
const cases = [];
for (let i = 0; i < count; ++i) {
  defs = {};
  const s = gen(0);
  if (Object.keys(defs).length) s.$defs = defs;
  cases.push({ id: `random ${i}`, schema: s });
}
const tools = JSON.parse(readFileSync(new URL('./fixtures/tool_schemas.json', import.meta.url)));
for (const t of tools) cases.push({ id: `tool ${t.function.name}`, schema: t.function.parameters });

// Refused, with the construct named in the message.
const refused = [
  [{ type: 'object', properties: { x: { not: { type: 'string' } } } }, "'not'"],
  [{ if: { type: 'string' }, then: { minLength: 2 } }, "'if'"],
  [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, "'uniqueItems'"],
  [{ type: 'array', contains: { type: 'string' } }, "'contains'"],
  [{ type: 'object', patternProperties: { '^x': { type: 'string' } } }, "'patternProperties'"],
  [{ type: 'number', multipleOf: 0.01 }, "'multipleOf'"],
  [{ type: 'string', format: 'ipv6' }, "format 'ipv6'"],
  [{ oneOf: [{ type: 'number' }, { type: 'integer' }] }, "'oneOf'"],
  [{ type: 'string', pattern: '(a)\\1' }, 'backreferences'],
  [{ type: 'string', pattern: '(?=a)b' }, 'lookaround'],
  [{ $ref: 'https://example.com/schema.json' }, 'local $refs'],
  [{ type: 'integer', minimum: 5, maximum: 4 }, 'no integer'],
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
