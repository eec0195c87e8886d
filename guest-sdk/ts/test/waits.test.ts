/**
 * Waits: `ctx.waitFor` suspends until the first event the test sends for the person, named as
 * awaited, received after the wait began and within its timeout, whose properties satisfy its
 * `where` — or until the timeout. The host journals it as `wait-for-event` then `wait-resolved`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, Criteria, type Event, days, defineModule, event, hours, journey, prop, template } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const T0 = Date.UTC(2026, 0, 5, 9);
const person = { key: 'u1', email: 'ada@example.com' };
const templates = ['thanks', 'nudge'].map((key) => template({ key, subject: key, body: key }));

function moduleOf(run: (ctx: Ctx) => void | Promise<void>) {
  return defineModule({ journeys: [journey({ id: 'j', trigger: 'trial.started', run })], templates });
}

/** A handler that waits three days for an order of at least 100, and remembers what it got. */
function bigOrder(received: (Event | null)[]) {
  return moduleOf(async (ctx) => {
    const order = await ctx.waitFor('order.paid', { timeout: days(3), where: prop('total').gte(100), label: 'a big order' });
    received.push(order);
    await ctx.sendEmail(order ? 'thanks' : 'nudge', { vars: { total: order?.number('total') ?? 0 } });
  });
}

describe('waits', () => {
  test('a wait receives the first matching event the test sends, when it arrives', async () => {
    // Given a small order after an hour and a big one after a day
    const received: (Event | null)[] = [];
    const kit = testModule(bigOrder(received), { startAt: T0 });

    // When the journey waits for an order of at least 100
    const run = await kit.run('j', {
      person,
      events: [
        { name: 'order.paid', after: hours(1), properties: { total: 20 } },
        { name: 'order.paid', after: days(1), properties: { total: 150 } },
        { name: 'order.paid', after: days(2), properties: { total: 300 } },
      ],
    });

    // Then it got the big one, a day in
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      received.map((e) => e && [e.name, e.occurredAt, e.properties]),
      [['order.paid', T0 + days(1), { total: 150 }]],
    );
    assert.deepEqual(run.emails[0]?.vars, { total: 150 });
    // and the small order woke the run, which looked, found no match and waited on
    assert.deepEqual(
      run.activations.map((a) => [a.at - T0, a.wokenBy, a.event, a.performed.map((s) => s.kind), a.outcome]),
      [
        [0, 'start', null, ['wait-for-event'], 'suspended'],
        [hours(1), 'event', 'order.paid', [], 'suspended'],
        [days(1), 'event', 'order.paid', ['wait-resolved', 'send-email'], 'completed'],
      ],
    );
  });

  test('the host journals the wait as a wait-for-event then a wait-resolved', async () => {
    const run = await testModule(bigOrder([]), { startAt: T0 }).run('j', {
      person,
      events: [{ name: 'order.paid', after: hours(2), properties: { total: 100 } }],
    });

    assert.deepEqual(run.steps[0]?.kind, 'wait-for-event');
    assert.deepEqual(run.steps[0]?.request, {
      event: 'order.paid',
      where: { type: 'property', property: 'total', operator: 'gte', value: 100 },
      timeoutMs: days(3),
      label: 'a big order',
    });
    assert.deepEqual(run.steps[0]?.response, { since: T0, deadline: T0 + days(3) });
    assert.deepEqual(run.steps[1]?.kind, 'wait-resolved');
    assert.deepEqual(run.steps[1]?.request, { event: 'order.paid' });
    const resolved = run.steps[1]?.response as { event: { name: string; receivedAt: number; properties: object } };
    assert.equal(resolved.event.name, 'order.paid');
    assert.equal(resolved.event.receivedAt, T0 + hours(2));
    assert.deepEqual(resolved.event.properties, { total: 100 });
  });

  test('with no matching event the wait times out: null, at the deadline', async () => {
    // Given only an order that comes after the timeout
    const received: (Event | null)[] = [];
    const run = await testModule(bigOrder(received), { startAt: T0 }).run('j', {
      person,
      events: [{ name: 'order.paid', after: days(4), properties: { total: 500 } }],
    });

    assert.deepEqual(received, [null]);
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['nudge'],
    );
    assert.equal(run.activations[1]?.wokenBy, 'timeout');
    assert.equal(run.activations[1]?.at, T0 + days(3));
    assert.deepEqual(run.steps[1]?.response, { timedOut: true });
  });

  test('an event before the wait began does not end it, nor does the trigger', async () => {
    // Given a handler that sleeps a day before it waits for any order
    const got: (number | null)[] = [];
    const module = moduleOf(async (ctx) => {
      await ctx.sleep(days(1), 'a day');
      const order = ctx.waitFor('order.paid', { timeout: days(1) });
      got.push(order?.number('total') ?? null);
    });

    // When an order comes during the sleep and another after the wait began
    await testModule(module, { startAt: T0 }).run('j', {
      person,
      events: [
        { name: 'order.paid', after: hours(12), properties: { total: 1 } },
        { name: 'order.paid', after: days(1) + hours(1), properties: { total: 2 } },
      ],
    });

    // Then the wait received the later one
    assert.deepEqual(got, [2]);
  });

  test('an event another person fires does not end the wait', async () => {
    const received: (Event | null)[] = [];
    await testModule(bigOrder(received), { startAt: T0 }).run('j', {
      person,
      events: [{ name: 'order.paid', after: hours(1), properties: { total: 999 }, person: 'someone-else' }],
    });
    assert.deepEqual(received, [null]);
  });

  test('where evaluates property conditions as the host does', async () => {
    // Given a wait for a pro or team plan upgrade that is not a trial
    const got: unknown[] = [];
    const module = moduleOf((ctx) => {
      const e = ctx.waitFor('plan.changed', {
        timeout: days(10),
        where: prop('plan').in(['pro', 'team']).and(prop('trial').neq(true), prop('seats').exists()),
      });
      got.push(e?.properties ?? null);
    });

    // When changes come that each miss one condition, then one that meets them all
    await testModule(module, { startAt: T0 }).run('j', {
      person,
      events: [
        { name: 'plan.changed', after: hours(1), properties: { plan: 'free', seats: 1 } },
        { name: 'plan.changed', after: hours(2), properties: { plan: 'pro', trial: true, seats: 1 } },
        { name: 'plan.changed', after: hours(3), properties: { plan: 'team', seats: null } },
        { name: 'plan.changed', after: hours(4), properties: { plan: 'team', seats: 3 } },
      ],
    });

    // Then the one that meets them all ends the wait (a missing `trial` satisfies neq, a null `seats` is missing)
    assert.deepEqual(got, [{ plan: 'team', seats: 3 }]);
  });

  test('a timeout over 30 days is refused with the host reason', async () => {
    const module = moduleOf((ctx) => {
      ctx.waitFor('order.paid', { timeout: days(31) });
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'failed');
    assert.match(
      run.error ?? '',
      /^the journey returned an error: HostError: wait-for-event failed: timeout of 1month 13h 26m 24s is over the 30days a wait may last\n {4}at /,
    );
    assert.deepEqual(run.steps, [], 'a refused wait records nothing');
  });

  test('a where with an event condition is refused: a wait filters the event properties', async () => {
    const reasons: string[] = [];
    const module = moduleOf((ctx) => {
      try {
        ctx.waitFor('order.paid', { timeout: days(1), where: event('order.paid').exists() });
      } catch (e) {
        reasons.push((e as Error).message);
      }
      try {
        ctx.waitFor('order.paid', { timeout: days(1), where: Criteria.fromJson('{"type":"property","property":"x","operator":"gt","value":"5"}') });
      } catch (e) {
        reasons.push((e as Error).message);
      }
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'completed');
    assert.deepEqual(reasons, [
      "wait-for-event failed: where-json: a wait's where holds property conditions only (on the event's properties), not event conditions",
      'wait-for-event failed: where-json: criteria.value must be a number for gt, got a string',
    ]);
  });

  test('a wait of zero with nothing there resolves at once as a timeout', async () => {
    const got: unknown[] = [];
    const module = moduleOf((ctx) => {
      got.push(ctx.waitFor('order.paid', { timeout: 0 }));
    });
    const run = await testModule(module).run('j', { person });
    assert.deepEqual(got, [null]);
    assert.equal(run.activations.length, 1);
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['wait-for-event', 'wait-resolved'],
    );
  });

  test('a waiting run shows what it waits for, and events can be sent while it waits', async () => {
    const received: (Event | null)[] = [];
    const kit = testModule(bigOrder(received), { startAt: T0 });

    const run = await kit.run('j', { person, until: T0 + days(1) });
    assert.equal(run.status, 'waiting');
    assert.deepEqual(run.waitingFor, {
      event: 'order.paid',
      where: { type: 'property', property: 'total', operator: 'gte', value: 100 },
      since: T0 + 1,
      deadline: T0 + days(3),
      label: 'a big order',
    });

    await run.send({ name: 'order.paid', after: hours(1), properties: { total: 120 } }).resume();

    assert.equal(run.status, 'completed');
    assert.equal(received[0]?.number('total'), 120);
    assert.equal(run.endedAt, T0 + days(1) + hours(1));
  });
});
