/**
 * The criteria language as the host reads and evaluates it (host/src/buckets/criteria.rs and
 * eval.rs; docs/criteria.md): a strict parser whose errors name the field by path
 * (`criteria.all[0].withinMs must be above zero`), the normal form the host writes back
 * (optional keys left out), and the evaluation of property conditions against a properties
 * object — what decides a wait's `where`, an exit rule's `where` and a journey's
 * `trigger-where`.
 *
 * @internal
 */
import type { CriteriaJson, Json } from '../criteria.js';

/** A criteria field that is missing, unknown or malformed; `path` names it from the root. */
export class CriteriaError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path} ${reason}`);
    this.name = 'CriteriaError';
  }
}

/** The root of every criteria path. */
export const ROOT = 'criteria';

const PROPERTY_FIELDS = ['type', 'property', 'operator', 'value'];
const EVENT_FIELDS = ['type', 'event', 'check', 'operator', 'value', 'withinMs'];
const COMPOSITE_FIELDS = ['type', 'conditions'];
const NOT_FIELDS = ['type', 'condition'];
const PROPERTY_OPERATORS = ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'contains', 'in', 'exists', 'not_exists'];
const COUNT_OPERATORS = ['gt', 'gte', 'lt', 'lte', 'eq'];

type Obj = { [key: string]: unknown };

function kind(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return 'a bool';
  if (typeof value === 'number') return 'a number';
  if (typeof value === 'string') return 'a string';
  if (Array.isArray(value)) return 'an array';
  return 'an object';
}

const isObject = (value: unknown): value is Obj =>
  value !== null && typeof value === 'object' && !Array.isArray(value);
const isScalar = (value: unknown): value is string | number | boolean =>
  typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
const has = (node: Obj, key: string): boolean => Object.prototype.hasOwnProperty.call(node, key);

/** Parses criteria JSON text as the host does (`Condition::from_json_str`). */
export function parseConditionText(json: string): CriteriaJson {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new CriteriaError(ROOT, `is not valid JSON: ${(e as Error).message}`);
  }
  return parseCondition(value);
}

/** Parses a criteria tree, returning its normal form (optional keys left out). */
export function parseCondition(value: unknown, path: string = ROOT): CriteriaJson {
  if (!isObject(value)) throw new CriteriaError(path, `must be a condition object, got ${kind(value)}`);
  if (!has(value, 'type')) {
    throw new CriteriaError(`${path}.type`, 'is missing (one of "property", "event", "all", "any", "not")');
  }
  const tag = value.type;
  if (typeof tag !== 'string') throw new CriteriaError(`${path}.type`, `must be a string, got ${kind(tag)}`);
  switch (tag) {
    case 'property':
      denyUnknown(value, path, PROPERTY_FIELDS, 'a property condition');
      return parseProperty(value, path);
    case 'event':
      denyUnknown(value, path, EVENT_FIELDS, 'an event condition');
      return parseEvent(value, path);
    case 'all':
    case 'any': {
      denyUnknown(value, path, COMPOSITE_FIELDS, 'a composite condition');
      const field = `${path}.conditions`;
      if (!has(value, 'conditions')) throw new CriteriaError(field, 'is missing');
      const items = value.conditions;
      if (!Array.isArray(items)) throw new CriteriaError(field, `must be an array, got ${kind(items)}`);
      return { type: tag, conditions: items.map((item, i) => parseCondition(item, `${path}.${tag}[${i}]`)) };
    }
    case 'not':
      denyUnknown(value, path, NOT_FIELDS, 'a not condition');
      if (!has(value, 'condition')) throw new CriteriaError(`${path}.condition`, 'is missing');
      return { type: 'not', condition: parseCondition(value.condition, `${path}.not`) };
    default:
      throw new CriteriaError(
        `${path}.type`,
        `${JSON.stringify(tag)} is not a condition type (one of "property", "event", "all", "any", "not")`,
      );
  }
}

function denyUnknown(node: Obj, path: string, allowed: string[], what: string): void {
  const unknown = Object.keys(node).find((k) => !allowed.includes(k));
  if (unknown !== undefined) {
    throw new CriteriaError(`${path}.${unknown}`, `is not a field of ${what} (its fields are ${allowed.join(', ')})`);
  }
}

function requiredString(node: Obj, path: string, field: string): string {
  if (!has(node, field)) throw new CriteriaError(`${path}.${field}`, 'is missing');
  const value = node[field];
  if (typeof value !== 'string') throw new CriteriaError(`${path}.${field}`, `must be a string, got ${kind(value)}`);
  if (value.trim() === '') throw new CriteriaError(`${path}.${field}`, 'must not be empty');
  return value;
}

function parseProperty(node: Obj, path: string): CriteriaJson {
  const property = requiredString(node, path, 'property');
  const operator = requiredString(node, path, 'operator');
  const valuePath = `${path}.value`;
  const present = has(node, 'value');
  const value = node.value;
  const missing = (op: string) => new CriteriaError(valuePath, `is missing (needed by ${op})`);
  const leaf = (op: string, operand?: Json): CriteriaJson =>
    operand === undefined
      ? { type: 'property', property, operator: op as 'exists' }
      : { type: 'property', property, operator: op as 'eq', value: operand };
  switch (operator) {
    case 'eq':
    case 'neq':
      if (!present) throw missing(operator);
      if (!isScalar(value)) {
        throw new CriteriaError(valuePath, `must be a string, number or bool for ${operator}, got ${kind(value)}`);
      }
      return leaf(operator, value);
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      if (!present) throw missing(operator);
      if (typeof value !== 'number') throw new CriteriaError(valuePath, `must be a number for ${operator}, got ${kind(value)}`);
      return leaf(operator, value);
    case 'contains':
      if (!present) throw missing('contains');
      if (typeof value !== 'string') throw new CriteriaError(valuePath, `must be a string for contains, got ${kind(value)}`);
      return leaf(operator, value);
    case 'in': {
      if (!present) throw missing('in');
      if (!Array.isArray(value)) throw new CriteriaError(valuePath, `must be an array for in, got ${kind(value)}`);
      if (value.length === 0) throw new CriteriaError(valuePath, 'must not be empty for in');
      const bad = value.findIndex((v) => !isScalar(v));
      if (bad >= 0) {
        throw new CriteriaError(`${path}.value[${bad}]`, `must be a string, number or bool, got ${kind(value[bad])}`);
      }
      return leaf(operator, value as Json[]);
    }
    case 'exists':
    case 'not_exists':
      if (present) throw new CriteriaError(valuePath, `must be left out for ${operator}`);
      return leaf(operator);
    default:
      throw new CriteriaError(
        `${path}.operator`,
        `${JSON.stringify(operator)} is not a property operator (one of ${PROPERTY_OPERATORS.join(', ')})`,
      );
  }
}

function parseEvent(node: Obj, path: string): CriteriaJson {
  const event = requiredString(node, path, 'event');
  const check = requiredString(node, path, 'check');
  let withinMs: number | undefined;
  if (has(node, 'withinMs')) {
    const w = node.withinMs;
    const field = `${path}.withinMs`;
    if (typeof w !== 'number') throw new CriteriaError(field, `must be a whole number of milliseconds, got ${kind(w)}`);
    if (w <= 0) throw new CriteriaError(field, 'must be above zero');
    if (!Number.isInteger(w)) throw new CriteriaError(field, 'must be a whole number of milliseconds');
    withinMs = w;
  }
  const out: { [key: string]: Json } = { type: 'event', event, check };
  switch (check) {
    case 'exists':
    case 'not_exists':
      for (const field of ['operator', 'value']) {
        if (has(node, field)) throw new CriteriaError(`${path}.${field}`, `must be left out for check ${check}`);
      }
      break;
    case 'count': {
      const op = requiredString(node, path, 'operator');
      if (!COUNT_OPERATORS.includes(op)) {
        throw new CriteriaError(
          `${path}.operator`,
          `${JSON.stringify(op)} is not a count operator (one of ${COUNT_OPERATORS.join(', ')})`,
        );
      }
      if (!has(node, 'value')) throw new CriteriaError(`${path}.value`, 'is missing (needed by check count)');
      const value = node.value;
      if (typeof value !== 'number') throw new CriteriaError(`${path}.value`, `must be a number, got ${kind(value)}`);
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new CriteriaError(`${path}.value`, `must be a whole number of at least zero, got ${value}`);
      }
      out.operator = op;
      out.value = value;
      break;
    }
    default:
      throw new CriteriaError(
        `${path}.check`,
        `${JSON.stringify(check)} is not an event check (one of exists, not_exists, count)`,
      );
  }
  if (withinMs !== undefined) out.withinMs = withinMs;
  return out as unknown as CriteriaJson;
}

/** Every leaf, depth first, in declaration order. */
export function* leaves(condition: CriteriaJson): Generator<CriteriaJson> {
  switch (condition.type) {
    case 'all':
    case 'any':
      for (const c of condition.conditions) yield* leaves(c);
      return;
    case 'not':
      yield* leaves(condition.condition);
      return;
    default:
      yield condition;
  }
}

/**
 * The host's load-time shape checks (`validate_shape`): composites are not empty, and no event
 * leg names a `bucket:` event.
 */
export function validateShape(condition: CriteriaJson, path: string = ROOT): void {
  switch (condition.type) {
    case 'property':
      return;
    case 'event':
      if (condition.event.startsWith('bucket:')) {
        throw new CriteriaError(
          `${path}.event`,
          `${JSON.stringify(condition.event)} is a bucket transition event; criteria may not depend on buckets`,
        );
      }
      return;
    case 'all':
    case 'any':
      if (condition.conditions.length === 0) {
        throw new CriteriaError(`${path}.conditions`, `must not be empty (an empty ${condition.type} is meaningless)`);
      }
      condition.conditions.forEach((c, i) => validateShape(c, `${path}.${condition.type}[${i}]`));
      return;
    case 'not':
      validateShape(condition.condition, `${path}.not`);
  }
}

/**
 * Whether `condition` holds for `properties`, as the host evaluates a filter on an event's
 * properties: property conditions as documented (a `null` property counts as missing; `neq`
 * holds for a missing one; types matter), `all` / `any` / `not` over them, and an event leg
 * counted as zero occurrences (filters have none; the host refuses them where it matters).
 */
export function holds(condition: CriteriaJson, properties: { readonly [key: string]: unknown }): boolean {
  switch (condition.type) {
    case 'all':
      return condition.conditions.every((c) => holds(c, properties));
    case 'any':
      return condition.conditions.some((c) => holds(c, properties));
    case 'not':
      return !holds(condition.condition, properties);
    case 'event': {
      const count = 0;
      if (condition.check === 'exists') return count > 0;
      if (condition.check === 'not_exists') return count === 0;
      return compareCount(condition.operator ?? 'eq', count, condition.value ?? 0);
    }
    case 'property': {
      const raw = Object.prototype.hasOwnProperty.call(properties, condition.property)
        ? properties[condition.property]
        : undefined;
      const actual = raw === null || raw === undefined ? undefined : raw;
      const expected = condition.value;
      switch (condition.operator) {
        case 'exists':
          return actual !== undefined;
        case 'not_exists':
          return actual === undefined;
        case 'eq':
          return actual !== undefined && scalarEq(actual, expected);
        case 'neq':
          return !(actual !== undefined && scalarEq(actual, expected));
        case 'in':
          return actual !== undefined && Array.isArray(expected) && expected.some((o) => scalarEq(actual, o));
        case 'contains':
          return typeof actual === 'string' && typeof expected === 'string' && actual.includes(expected);
        case 'gt':
          return typeof actual === 'number' && typeof expected === 'number' && actual > expected;
        case 'gte':
          return typeof actual === 'number' && typeof expected === 'number' && actual >= expected;
        case 'lt':
          return typeof actual === 'number' && typeof expected === 'number' && actual < expected;
        case 'lte':
          return typeof actual === 'number' && typeof expected === 'number' && actual <= expected;
      }
    }
  }
  return false;
}

function compareCount(op: string, count: number, value: number): boolean {
  switch (op) {
    case 'gt':
      return count > value;
    case 'gte':
      return count >= value;
    case 'lt':
      return count < value;
    case 'lte':
      return count <= value;
    default:
      return count === value;
  }
}

/** Strict equality: same JSON type and value (`"1"` is not `1`). */
function scalarEq(actual: unknown, expected: unknown): boolean {
  if (typeof actual === 'number' && typeof expected === 'number') return actual === expected;
  if (typeof actual === 'string' && typeof expected === 'string') return actual === expected;
  if (typeof actual === 'boolean' && typeof expected === 'boolean') return actual === expected;
  return false;
}
