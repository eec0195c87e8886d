/**
 * The criteria language (docs/criteria.md) as a typed builder: a bucket's membership, a
 * journey's trigger filter, an exit rule's or a wait's condition.
 *
 * ```ts
 * all(
 *   event('feature.used').within(days(7)).atLeast(5),
 *   prop('plan').in(['pro', 'team']),
 *   not(prop('churned').eq(true)),
 * )
 * ```
 */
import { type Duration, checkDuration } from './duration.js';

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The JSON shape of a criteria tree, as the host reads it. */
export type CriteriaJson =
  | { type: 'all' | 'any'; conditions: CriteriaJson[] }
  | { type: 'not'; condition: CriteriaJson }
  | { type: 'property'; property: string; operator: PropertyOperator; value?: Json }
  | {
      type: 'event';
      event: string;
      check: 'exists' | 'not_exists' | 'count';
      operator?: CountOperator;
      value?: number;
      withinMs?: number;
    };

export type PropertyOperator =
  | 'eq'
  | 'neq'
  | 'gt'
  | 'gte'
  | 'lt'
  | 'lte'
  | 'contains'
  | 'in'
  | 'exists'
  | 'not_exists';
export type CountOperator = 'gt' | 'gte' | 'lt' | 'lte' | 'eq';

/** A condition. Combine with {@link all}, {@link any}, {@link not} (or `.and`, `.or`, `.not()`). */
export class Criteria {
  /** @internal use the builders ({@link prop}, {@link event}, {@link all}, …) or {@link Criteria.fromJson}. */
  constructor(readonly json: CriteriaJson) {}

  /** Criteria kept as JSON in the documented schema. The host checks it on deploy. */
  static fromJson(json: CriteriaJson | string): Criteria {
    const value = typeof json === 'string' ? (JSON.parse(json) as CriteriaJson) : json;
    if (value === null || typeof value !== 'object' || typeof value.type !== 'string') {
      throw new TypeError('criteria JSON must be an object with a "type"');
    }
    return new Criteria(value);
  }

  and(...others: Criteria[]): Criteria {
    return all(this, ...others);
  }

  or(...others: Criteria[]): Criteria {
    return any(this, ...others);
  }

  not(): Criteria {
    return not(this);
  }

  toJSON(): CriteriaJson {
    return this.json;
  }

  toString(): string {
    return JSON.stringify(this.json);
  }
}

type Conditions = Criteria[] | [Criteria[]];

function flatten(conditions: Conditions): Criteria[] {
  const list = conditions.length === 1 && Array.isArray(conditions[0]) ? conditions[0] : conditions;
  return (list as unknown[]).map((c, i) => {
    if (!(c instanceof Criteria)) {
      throw new TypeError(`condition ${i} is not a condition (build it with prop(..), event(..), all(..), …)`);
    }
    return c;
  });
}

/** True when every condition is: `all(a, b)` or `all([a, b])`. An empty list is refused. */
export function all(...conditions: Conditions): Criteria {
  return new Criteria({ type: 'all', conditions: nonEmpty(flatten(conditions), 'all').map((c) => c.json) });
}

/** True when at least one condition is. An empty list is refused. */
export function any(...conditions: Conditions): Criteria {
  return new Criteria({ type: 'any', conditions: nonEmpty(flatten(conditions), 'any').map((c) => c.json) });
}

function nonEmpty(conditions: Criteria[], what: string): Criteria[] {
  if (conditions.length === 0) throw new TypeError(`${what}() needs at least one condition`);
  return conditions;
}

/** True when `condition` is not. */
export function not(condition: Criteria): Criteria {
  return new Criteria({ type: 'not', condition: flatten([condition])[0]!.json });
}

/** A condition on a property (of the contact, or of the event for trigger and wait filters). */
export function prop(property: string): Prop {
  return new Prop(property);
}

export class Prop {
  constructor(private readonly property: string) {}

  private op(operator: PropertyOperator, value?: Json): Criteria {
    const json: CriteriaJson =
      value === undefined
        ? { type: 'property', property: this.property, operator }
        : { type: 'property', property: this.property, operator, value };
    return new Criteria(json);
  }

  eq(value: Json): Criteria {
    return this.op('eq', value);
  }
  neq(value: Json): Criteria {
    return this.op('neq', value);
  }
  gt(n: number): Criteria {
    return this.op('gt', n);
  }
  gte(n: number): Criteria {
    return this.op('gte', n);
  }
  lt(n: number): Criteria {
    return this.op('lt', n);
  }
  lte(n: number): Criteria {
    return this.op('lte', n);
  }
  /** The property (a string) contains `needle`. */
  contains(needle: string): Criteria {
    return this.op('contains', needle);
  }
  /** The property equals one of `values`. */
  in(values: readonly Json[]): Criteria {
    return this.op('in', [...values]);
  }
  exists(): Criteria {
    return this.op('exists');
  }
  notExists(): Criteria {
    return this.op('not_exists');
  }
}

/** A condition on how often the person fired an event (optionally within a window). */
export function event(name: string): EventCount {
  return new EventCount(name);
}

export class EventCount {
  private window: Duration | undefined;

  constructor(private readonly name: string) {}

  /** Count only events that occurred within `window` of now (a time-based condition). */
  within(window: Duration): this {
    this.window = checkDuration(window, `event("${this.name}").within(..)`);
    return this;
  }

  private check(check: 'exists' | 'not_exists' | 'count', op?: CountOperator, n?: number): Criteria {
    const json: Record<string, Json> = { type: 'event', event: this.name, check };
    if (op !== undefined) {
      if (!Number.isSafeInteger(n) || (n as number) < 0) {
        throw new TypeError(`event("${this.name}") count must be a whole number >= 0, got ${n}`);
      }
      json.operator = op;
      json.value = n as number;
    }
    if (this.window !== undefined) json.withinMs = this.window;
    return new Criteria(json as CriteriaJson);
  }

  exists(): Criteria {
    return this.check('exists');
  }
  notExists(): Criteria {
    return this.check('not_exists');
  }
  count(op: CountOperator, n: number): Criteria {
    return this.check('count', op, n);
  }
  atLeast(n: number): Criteria {
    return this.count('gte', n);
  }
  moreThan(n: number): Criteria {
    return this.count('gt', n);
  }
  atMost(n: number): Criteria {
    return this.count('lte', n);
  }
  lessThan(n: number): Criteria {
    return this.count('lt', n);
  }
  exactly(n: number): Criteria {
    return this.count('eq', n);
  }
}
