/**
 * Virtual time: sleeps suspend the run and the clock jumps to the wake; a test can stop a run
 * at an instant or after some activations to look at it waiting, and drive it on.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, days, defineModule, hours, journey, minutes, template, weeks } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const T0 = Date.UTC(2026, 0, 5, 9);
const person = { key: 'u1', email: 'ada@example.com' };
const templates = ['hello', 'bye'].map((key) => template({ key, subject: key, body: key }));

function moduleOf(run: (ctx: Ctx) => void | Promise<void>) {
  return defineModule({ journeys: [journey({ id: 'j', trigger: 'go', run })], templates });
}

describe('sleeps', () => {
  test('a sleep suspends the run and the next activation comes when it is over', async () => {
    // Given a handler that reads the clock around a sleep
    const clocks: number[] = [];
    const module = moduleOf((ctx) => {
      clocks.push(ctx.now());
      ctx.sleep(days(3), 'three days');
      clocks.push(ctx.now());
    });
    const kit = testModule(module, { startAt: T0 });

    // When it runs
    const run = await kit.run('j', { person });

    // Then the second activation came three days later, replaying the first now() and reading
    // the clock anew after the sleep
    assert.deepEqual(
      run.activations.map((a) => [a.at, a.wokenBy]),
      [
        [T0, 'start'],
        [T0 + days(3), 'timer'],
      ],
    );
    assert.deepEqual(clocks, [T0, T0, T0 + days(3)]);
    assert.equal(kit.now, T0 + days(3));
    assert.equal(run.endedAt, T0 + days(3));
  });

  test('sleepUntil an instant already past returns at once, and is still one step', async () => {
    const module = moduleOf((ctx) => {
      ctx.sleepUntil(T0 - hours(1));
      ctx.sleepUntil(new Date(T0 + hours(5)), 'five hours in');
      ctx.sendEmail('hello');
    });

    const run = await testModule(module, { startAt: T0 }).run('j', { person });

    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.steps.map((s) => [s.kind, s.request]),
      [
        ['sleep-until', { at: T0 - hours(1), label: 'sleep until 2026-01-05T08:00:00.000Z' }],
        ['sleep-until', { at: T0 + hours(5), label: 'five hours in' }],
        ['send-email', { template: 'hello', to: null, vars: {} }],
      ],
    );
    assert.equal(run.activations.length, 2);
    assert.equal(run.emails[0]?.at, T0 + hours(5));
  });

  test('a sleep of zero is a step that does not suspend', async () => {
    const module = moduleOf((ctx) => {
      ctx.sleep(0);
      ctx.sendEmail('hello');
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.activations.length, 1);
    assert.deepEqual(run.steps[0]?.request, { durationMs: 0, label: 'sleep 0s' });
  });

  test('a sleep over ten years fails the run as the host refuses it', async () => {
    const module = moduleOf((ctx) => {
      ctx.sleep(days(3653), 'forever');
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'failed');
    assert.equal(run.error, 'a sleep of 10years 12h is longer than the maximum of 10years');
    assert.deepEqual(run.steps, []);
  });

  test('a sleepUntil more than ten years ahead fails the same way', async () => {
    const module = moduleOf((ctx) => {
      ctx.sleepUntil(ctx.now() + weeks(600));
    });

    const run = await testModule(module, { startAt: T0 }).run('j', { person });

    assert.match(run.error ?? '', /^a sleep of 11years .* is longer than the maximum of 10years$/);
  });

  test('a durable sleep with a bad duration fails the run with the SDK type error', async () => {
    const module = moduleOf((ctx) => {
      ctx.sleep(-5);
    });

    const run = await testModule(module).run('j', { person });

    assert.match(run.error ?? '', /^the journey returned an error: TypeError: sleep duration must be a whole, non-negative number of milliseconds/);
  });
});

describe('stopping and resuming', () => {
  const module = moduleOf(async (ctx) => {
    await ctx.sendEmail('hello');
    await ctx.sleep(days(2), 'two days');
    await ctx.sendEmail('bye');
  });

  test('until stops the run at an instant, waiting, and resume drives it on', async () => {
    const kit = testModule(module, { startAt: T0 });

    // When the run is stopped a day in
    const run = await kit.run('j', { person, until: T0 + days(1) });

    // Then it waits for its sleep, and the clock is at the stop
    assert.equal(run.status, 'waiting');
    assert.equal(run.wakeAt, T0 + days(2));
    assert.equal(kit.now, T0 + days(1));
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['hello'],
    );

    // When it is resumed
    await run.resume();

    // Then it completes when the sleep is over
    assert.equal(run.status, 'completed');
    assert.equal(run.endedAt, T0 + days(2));
  });

  test('what is due exactly at until still happens', async () => {
    const run = await testModule(module, { startAt: T0 }).run('j', { person, until: T0 + days(2) });
    assert.equal(run.status, 'completed');
  });

  test('activations stops after that many activations; zero only starts the run', async () => {
    const kit = testModule(module, { startAt: T0 });

    const run = await kit.run('j', { person, activations: 0 });
    assert.equal(run.status, 'active');
    assert.equal(run.activations.length, 0);

    await run.resume({ activations: 1 });
    assert.equal(run.status, 'waiting');
    assert.equal(run.activations.length, 1);

    await run.resume({ activations: 5 });
    assert.equal(run.status, 'completed');
  });

  test('the kit clock only moves forward', async () => {
    const kit = testModule(module, { startAt: T0 });
    await kit.advance(hours(1));
    await assert.rejects(kit.run('j', { person, at: T0 }), /before the kit's clock/);
    await assert.rejects(kit.advanceTo(T0), /the kit's time only moves forward/);
  });

  test('a run can start later: the clock moves there first', async () => {
    const kit = testModule(module, { startAt: T0 });
    const run = await kit.run('j', { person, at: T0 + minutes(30), activations: 1 });
    assert.equal(run.startedAt, T0 + minutes(30));
    assert.equal(run.steps[0]?.recordedAt, T0 + minutes(30));
  });

  test('advancing the kit drives every live run through what falls due', async () => {
    const kit = testModule(module, { startAt: T0 });
    const first = await kit.run('j', { person, activations: 1 });
    const second = await kit.run('j', { person: { key: 'u2', email: 'bob@example.com' }, at: T0 + days(1), activations: 1 });

    await kit.advance(days(1) + hours(1));

    assert.equal(first.status, 'completed');
    assert.equal(second.status, 'waiting');
    assert.equal(kit.now, T0 + days(2) + hours(1));
    assert.deepEqual(
      kit.runs.map((r) => r.id),
      [first.id, second.id],
    );
  });

  test('the timeline tells each activation', async () => {
    const run = await testModule(module, { startAt: T0 }).run('j', { person });
    assert.equal(
      run.timeline(),
      [
        'run-1 of "j" for "u1": completed',
        '  #1 2026-01-05T09:00:00.000Z (start): replayed 0; performed send-email {"template":"hello","to":null,"vars":{}}, ' +
          'sleep {"durationMs":172800000,"label":"two days"} -> suspended until 2026-01-07T09:00:00.000Z',
        '  #2 2026-01-07T09:00:00.000Z (timer): replayed 2; performed send-email {"template":"bye","to":null,"vars":{}} -> completed',
      ].join('\n'),
    );
  });
});
