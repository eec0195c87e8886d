/**
 * Conditions on event properties — a wait's `where`, an exit rule's `where`, a journey's
 * `where` — decide as the host decides them (docs/criteria.md), and criteria the host would
 * refuse on load are refused when the kit is made.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Criteria, all, any, bucket, days, defineModule, event, journey, not, prop } from '../src/index.js';
import { describeModule, testModule } from '../src/testing/index.js';

/** Whether `where` lets an event with `properties` start a run of a journey filtered by it. */
async function starts(where: Criteria, properties: { [key: string]: unknown }): Promise<boolean> {
  const module = defineModule({ journeys: [journey({ id: 'j', trigger: 'e', where, run: () => undefined })] });
  const run = await testModule(module).run('j', { person: { key: 'p' }, trigger: { properties } });
  return run.status !== 'skipped';
}

describe('property conditions', () => {
  const cases: [string, Criteria, { [key: string]: unknown }, boolean][] = [
    ['eq matches the same type and value', prop('plan').eq('pro'), { plan: 'pro' }, true],
    ['eq does not match another type', prop('n').eq(1), { n: '1' }, false],
    ['eq compares numbers by value', prop('n').eq(1), { n: 1.0 }, true],
    ['neq holds for a missing property', prop('plan').neq('pro'), {}, true],
    ['neq holds for a null one', prop('plan').neq('pro'), { plan: null }, true],
    ['neq fails for the value', prop('plan').neq('pro'), { plan: 'pro' }, false],
    ['gt compares numbers', prop('n').gt(5), { n: 6 }, true],
    ['gt never matches a numeric string', prop('n').gt(5), { n: '6' }, false],
    ['gte includes the bound', prop('n').gte(5), { n: 5 }, true],
    ['lt', prop('n').lt(5), { n: 4.5 }, true],
    ['lte fails above', prop('n').lte(5), { n: 5.5 }, false],
    ['contains is a case-sensitive substring', prop('s').contains('acme'), { s: 'team-acme-1' }, true],
    ['contains does not search arrays', prop('s').contains('acme'), { s: ['acme'] }, false],
    ['contains is case-sensitive', prop('s').contains('acme'), { s: 'ACME' }, false],
    ['in matches one of the values, by type', prop('t').in(['1', 2]), { t: 2 }, true],
    ['in does not match across types', prop('t').in(['1', 2]), { t: 1 }, false],
    ['exists is present and not null', prop('x').exists(), { x: 0 }, true],
    ['exists fails for null', prop('x').exists(), { x: null }, false],
    ['not_exists holds for a missing one', prop('x').notExists(), {}, true],
    ['all needs every one', all(prop('a').eq(1), prop('b').eq(2)), { a: 1, b: 3 }, false],
    ['any needs one', any(prop('a').eq(1), prop('b').eq(2)), { a: 0, b: 2 }, true],
    ['not negates', not(prop('a').eq(1)), { a: 2 }, true],
    ['a dotted key is a key, not a path', prop('a.b').eq(1), { 'a.b': 1 }, true],
    ['a dotted key does not read nested objects', prop('a.b').eq(1), { a: { b: 1 } }, false],
  ];
  for (const [name, where, properties, expected] of cases) {
    test(name, async () => {
      assert.equal(await starts(where, properties), expected);
    });
  }
});

describe('conditions the host refuses on load', () => {
  test('a journey where with an event condition is refused when the kit is made', () => {
    const module = defineModule({
      journeys: [journey({ id: 'j', trigger: 'e', where: event('x').exists(), run: () => undefined })],
    });
    assert.throws(() => testModule(module), {
      name: 'ModuleError',
      problems: [
        'journeys[0] "j": trigger-where may hold only property conditions (on the event\'s properties); event condition "x" is not allowed',
      ],
    });
  });

  test('a malformed exit rule condition is refused, naming the field', () => {
    const module = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'e',
          exitOn: [{ event: 'stop', where: Criteria.fromJson({ type: 'property', property: 'n', operator: 'gt', value: 'x' } as never) }],
          run: () => undefined,
        }),
      ],
    });
    assert.throws(() => testModule(module), {
      problems: ['journeys[0] "j": exit-on[0].where.value must be a number for gt, got a string'],
    });
  });

  test("a bucket's criteria with an empty composite or a bucket event is refused", () => {
    const module = defineModule({
      buckets: [
        bucket({ id: 'a', criteria: Criteria.fromJson({ type: 'all', conditions: [] }) }),
        bucket({ id: 'b', criteria: event('bucket:entered:a').exists() }),
      ],
    });
    assert.throws(() => testModule(module), {
      problems: [
        'buckets[0] "a": criteria.conditions must not be empty (an empty all is meaningless)',
        'buckets[1] "b": criteria.event "bucket:entered:a" is a bucket transition event; criteria may not depend on buckets',
      ],
    });
  });
});

describe('the builder', () => {
  test('an empty all or any is refused where it is written', () => {
    assert.throws(() => all([]), { name: 'TypeError', message: 'all() needs at least one condition' });
    assert.throws(() => any(), { name: 'TypeError', message: 'any() needs at least one condition' });
  });
});

describe('describeModule', () => {
  test('the manifest reads as plain JSON, conditions parsed', () => {
    const module = defineModule({
      journeys: [
        journey({ id: 'j', trigger: 'e', where: prop('plan').eq('pro'), exitOn: ['stop'], suppress: days(1), run: () => undefined }),
      ],
      buckets: [
        bucket({
          id: 'power',
          criteria: event('feature.used').within(days(7)).atLeast(5),
          onEnter: { run: () => undefined, firstEntryOnly: true },
          onLeave: { run: () => undefined, reasons: ['maxDwell'] },
          onDwell: [{ every: days(30), run: () => undefined }],
        }),
      ],
    });

    const manifest = describeModule(module);

    assert.deepEqual(manifest.journeys[0], {
      id: 'j',
      name: 'j',
      trigger: 'e',
      triggerWhere: { type: 'property', property: 'plan', operator: 'eq', value: 'pro' },
      exitOn: [{ event: 'stop', where: null }],
      entryLimit: 'once',
      enabled: true,
      suppressMs: days(1),
    });
    assert.deepEqual(manifest.buckets[0], {
      id: 'power',
      name: 'power',
      description: null,
      enabled: true,
      kind: 'computed',
      criteria: { type: 'event', event: 'feature.used', check: 'count', operator: 'gte', value: 5, withinMs: days(7) },
      timeBased: null,
      fastExpiry: false,
      minDwellMs: null,
      maxDwellMs: null,
      entryLimit: 'unlimited',
      reactions: [
        { journeyId: 'bucket-power-on-enter', handler: 'bucket-power-on-enter', on: { enter: { firstEntryOnly: true } } },
        { journeyId: 'bucket-power-on-leave', handler: 'bucket-power-on-leave', on: { leave: { reasons: ['maxDwell'] } } },
        {
          journeyId: `bucket-power-on-dwell-every-${days(30)}`,
          handler: `bucket-power-on-dwell-every-${days(30)}`,
          on: { dwell: { afterMs: null, everyMs: days(30) } },
        },
      ],
    });
    assert.deepEqual(testModule(module).describe(), manifest);
  });
});
