// JSON Schemas as zod v4 writes them (z.toJSONSchema, which the openai SDK's zodResponseFormat
// sends as is once strict-mode checks pass), compiled by constrain_sample: every drawn output must
// pass the zod schema itself (zod's own checks define its formats) and ajv (the JSON Schema, with
// the pattern zod writes beside each format). Strings outside the language: each output is mutated
// (a character deleted, replaced or inserted) and every mutant the automaton accepts must pass zod
// and ajv too. Schemas that stay refused are checked to name the construct.
//
//   node zod_corpus.mjs <constrain_sample> <tests/node dir>
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const [sampler, nodeDir] = process.argv.slice(2);
const require = createRequire(path.resolve(nodeDir, 'package.json'));
const { z } = require('zod');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const seed = Number(process.env.CONSTRAIN_SEED ?? (Date.now() % 1000000007));
console.log(`seed ${seed} (CONSTRAIN_SEED=${seed} reproduces this run)`);

const cases = {
  startsWith: z.string().startsWith('ab'),
  endsWith: z.string().endsWith('yz'),
  includes: z.string().includes('mid'),
  lowercase: z.string().lowercase(),
  uppercase: z.string().uppercase(),
  combined: z.string().startsWith('a').endsWith('z').min(3).max(12),
  cuid: z.cuid(), cuid2: z.cuid2(), nanoid: z.nanoid(), ulid: z.ulid(), xid: z.xid(), ksuid: z.ksuid(),
  e164: z.e164(), base64: z.base64(), base64url: z.base64url(), hex: z.hex(),
  cidrv4: z.cidrv4(), cidrv6: z.cidrv6(), ipv4: z.ipv4(), ipv6: z.ipv6(),
  hostname: z.hostname(), duration: z.iso.duration(),
  email: z.email(), uuid: z.uuid(), datetime: z.iso.datetime(), date: z.iso.date(),
  intStep: z.int().multipleOf(5),
  intStepBounded: z.int().min(-1000).max(1000).multipleOf(15),
  record: z.record(z.enum(['a', 'b', 'c']), z.number()),
  partialRecord: z.partialRecord(z.enum(['x', 'y']), z.boolean()),
  regexRecord: z.record(z.string().regex(/^k[0-9]{1,3}$/), z.int()),
  object: z.object({ id: z.cuid2(), ip: z.ipv6(), phone: z.e164(), tags: z.record(z.enum(['red', 'blue']), z.int().multipleOf(2)),
                     host: z.hostname(), code: z.string().startsWith('X-').max(8) }),
};
// The same formats sent alone, without zod's pattern (as a hand-written schema would): what we
// compile for the format must still pass zod's check. (Not for date-time, uuid, ...: there zod is
// stricter than the JSON Schema format, e.g. z.uuid() wants a version nibble; zod always sends its
// pattern beside those.)
const formatAlone = ['cuid', 'cuid2', 'nanoid', 'ulid', 'xid', 'ksuid', 'e164', 'base64', 'base64url', 'hex', 'cidrv4',
                     'cidrv6', 'ipv4', 'ipv6', 'hostname', 'duration', 'lowercase', 'uppercase'];
const sent = {};
for (const [n, zs] of Object.entries(cases)) sent[n] = z.toJSONSchema(zs);
for (const n of formatAlone) {
  const { pattern, ...rest } = sent[n];
  if (pattern === undefined) throw new Error(`${n}: zod wrote no pattern to leave out`);
  cases[`${n} (format alone)`] = cases[n];
  sent[`${n} (format alone)`] = rest;
}
// Outputs zod accepts that a random walk rarely ends on (the automaton must accept them too).
const examples = { endsWith: ['"xyz"', '"yz"'], includes: ['"mid"', '"a mid b"'], combined: ['"abz"', '"a-zz"'] };
// Refused: a message naming what cannot be enforced.
const refused = {
  jwt: [z.jwt(), "format 'jwt'"],                          // the header must decode to JSON naming an alg
  emoji: [z.emoji(), 'lookaround'],                         // a lookahead over Unicode properties
  decimalStep: [z.number().multipleOf(0.01), "'multipleOf' other than a positive integer"],
  lookahead: [z.string().regex(/^(?=.*[0-9]).{8,}$/), 'lookaround'],
};

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true, logger: false });
addFormats(ajv);
const names = Object.keys(cases);
const input = names.map((n, i) => JSON.stringify({ id: i, kind: 'json_schema', text: JSON.stringify(sent[n]), n: 8, seed: seed + i }))
  .concat(Object.keys(refused).map((n, i) => JSON.stringify({ id: 1000 + i, kind: 'json_schema', text: JSON.stringify(z.toJSONSchema(refused[n][0])), n: 1 })))
  .join('\n') + '\n';
const run = (text) => {
  const r = spawnSync(sampler, [], { input: text, maxBuffer: 1 << 28, timeout: 100000 });
  if (r.status !== 0) throw new Error(`constrain_sample failed: ${r.stderr}`);
  return new Map(r.stdout.toString().trim().split('\n').map((l) => { const x = JSON.parse(l); return [x.id, x]; }));
};
const results = run(input);

let failures = 0, outputs = 0, mutantsAccepted = 0, mutantsChecked = 0;
const fail = (msg) => { ++failures; if (failures <= 30) console.log(`FAIL ${msg}`); };
const valid = (n, text) => {
  let v;
  try { v = JSON.parse(text); } catch { return 'not JSON'; }
  if (!cases[n].safeParse(v).success) return 'zod refuses it';
  const validate = ajv.compile(z.toJSONSchema(cases[n]));
  if (!validate(v)) return `ajv: ${ajv.errorsText(validate.errors)}`;
  return null;
};
// Characters a mutant may take: those of the formats' alphabets and JSON's.
const alphabet = 'aAzZ09-_.:/+=@ "\\{},x';
let rng = seed >>> 0;
const rand = (k) => { rng = (rng * 1103515245 + 12345) >>> 0; return rng % k; };
const checks = [];
names.forEach((n, i) => {
  const r = results.get(i);
  if (r.error) return fail(`${n}: refused: ${r.error}\n  schema ${JSON.stringify(sent[n])}`);
  if (r.outputs.length === 0 && !examples[n]) fail(`${n}: no output drawn`);
  const mutants = new Set();
  for (const o of r.outputs.concat(examples[n] ?? [])) {
    ++outputs;
    const why = valid(n, o);
    if (why) fail(`${n}: ${JSON.stringify(o)}: ${why}`);
    for (let k = 0; k < 40; ++k) {
      const at = rand(o.length + 1), c = alphabet[rand(alphabet.length)];
      const kind = rand(3);
      const m = kind === 0 ? o.slice(0, at) + o.slice(at + 1) : kind === 1 ? o.slice(0, at) + c + o.slice(at + 1) : o.slice(0, at) + c + o.slice(at);
      if (m.isWellFormed()) mutants.add(m);
    }
  }
  checks.push({ id: i, n, strings: [...mutants], examples: examples[n] ?? [] });
});
const checked = run(checks.map((c) => JSON.stringify({ id: c.id, kind: 'json_schema', text: JSON.stringify(sent[c.n]), check: c.examples.concat(c.strings) })).join('\n') + '\n');
for (const c of checks) {
  const acc = checked.get(c.id).accepted;
  c.examples.forEach((s, k) => {
    if (valid(c.n, s)) fail(`${c.n}: example ${s} is not valid: ${valid(c.n, s)}`);
    if (!acc[k]) fail(`${c.n}: the automaton refuses ${s}, which zod and ajv accept`);
  });
  acc.splice(0, c.examples.length);
  c.strings.forEach((s, k) => {
    ++mutantsChecked;
    if (!acc[k]) return;
    ++mutantsAccepted;
    const why = valid(c.n, s);
    if (why) fail(`${c.n}: the automaton accepts ${JSON.stringify(s)}, but ${why}`);
  });
}
Object.keys(refused).forEach((n, i) => {
  const r = results.get(1000 + i);
  if (!r.error) fail(`${n}: accepted a schema it must refuse: ${JSON.stringify(z.toJSONSchema(refused[n][0]))}`);
  else if (!r.error.includes(refused[n][1])) fail(`${n}: the refusal does not name ${refused[n][1]}: ${r.error}`);
});
console.log(`${names.length} schemas (${formatAlone.length} of them a format alone), ${outputs} outputs validated, ${mutantsChecked} mutants checked ` +
            `(${mutantsAccepted} accepted, each valid), ${Object.keys(refused).length} refusals, ${failures} failures`);
process.exit(failures ? 1 : 0);
