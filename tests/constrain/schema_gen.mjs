// Random JSON Schemas for the corpus tests: every keyword the compiler supports, nested, with
// awkward property names and values; oneOf branches are made exclusive (types or a const tag).
// A seeded generator, so a run is reproduced from its seed.
export function schemaGenerator(seed) {
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
    // Numbers bounded closer than an integer apart, or with none between: (0, 1), [0.1234, 0.1235].
    if (!integer && chance(0.25)) {
      const lo = int(-50, 50) + pick([0, 0.1, 0.25, 0.1234, 0.5]);
      s[chance(0.5) ? 'minimum' : 'exclusiveMinimum'] = lo;
      s[chance(0.5) ? 'maximum' : 'exclusiveMaximum'] = lo + pick([1, 0.5, 0.1, 0.0001]);
      return s;
    }
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

  // A whole schema with its $defs.
  return function next() {
    defs = {};
    const s = gen(0);
    if (Object.keys(defs).length) s.$defs = defs;
    return s;
  };
}

// The schema with every free-length string bounded (maxLength <= cap): a random model closes a
// string rarely, so end-to-end tests bound them to finish within their token budget.
export function boundStrings(schema, cap, rand = Math.random) {
  const walk = (s) => {
    if (Array.isArray(s)) return s.map(walk);
    if (!s || typeof s !== 'object') return s;
    const out = {};
    for (const [k, v] of Object.entries(s)) {
      out[k] = (k === 'enum' || k === 'const' || k === 'default' || k === 'examples') ? v : walk(v);
    }
    const isString = out.type === 'string' || (Array.isArray(out.type) && out.type.includes('string'));
    if (isString && out.maxLength === undefined && out.pattern === undefined && out.format === undefined &&
        out.enum === undefined && out.const === undefined) {
      out.maxLength = Math.max(out.minLength ?? 0, Math.floor(rand() * (cap + 1)));
    }
    return out;
  };
  return walk(schema);
}
