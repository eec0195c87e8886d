/**
 * Replay: every activation calls the handler from the top against the run's journal; recorded
 * steps answer from it, the frontier is performed and recorded, and a handler that calls
 * something else than the journal holds fails in the host's words.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, days, defineModule, hours, journey, template } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const templates = ['welcome', 'a', 'b', 'tips', 'late'].map((key) => template({ key, subject: key, body: key }));
const person = { key: 'u1', email: 'ada@example.com', properties: { name: 'Ada' } };

function moduleOf(run: (ctx: Ctx) => void | Promise<void>) {
  return defineModule({ journeys: [journey({ id: 'j', trigger: 'go', run })], templates });
}

describe('replay', () => {
  test('each activation runs the handler from the top, answering recorded steps from the journal', async () => {
    // Given a handler that counts its calls and sends, sleeps, reads the clock and random, sends
    let calls = 0;
    const seen: { now: number; random: number }[] = [];
    const module = moduleOf((ctx) => {
      calls++;
      ctx.sendEmail('welcome');
      ctx.sleep(days(2), 'two days');
      seen.push({ now: ctx.now(), random: ctx.random() });
      ctx.sleep(hours(1));
      ctx.sendEmail('tips');
    });
    const kit = testModule(module, { startAt: Date.UTC(2026, 0, 5), random: [0.25] });

    // When the run goes to its end
    const run = await kit.run('j', { person });

    // Then the handler ran once per activation, from the top
    assert.equal(run.status, 'completed', run.timeline());
    assert.equal(calls, 3);
    assert.equal(run.activations.length, 3);
    // and each step was performed once, in journal order
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['send-email', 'sleep', 'now', 'random', 'sleep', 'send-email'],
    );
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['welcome', 'tips'],
    );
    // and a replayed now() and random() answer what the first activation got
    assert.deepEqual(seen, [
      { now: Date.UTC(2026, 0, 7), random: 0.25 },
      { now: Date.UTC(2026, 0, 7), random: 0.25 },
    ]);
    // and the reports say which steps each activation replayed and which it performed
    assert.deepEqual(
      run.activations.map((a) => [a.wokenBy, a.replayed.length, a.performed.map((s) => s.kind), a.outcome]),
      [
        ['start', 0, ['send-email', 'sleep'], 'suspended'],
        ['timer', 2, ['now', 'random', 'sleep'], 'suspended'],
        ['timer', 5, ['send-email'], 'completed'],
      ],
    );
    assert.deepEqual(
      run.steps.map((s) => s.seq),
      [0, 1, 2, 3, 4, 5],
    );
  });

  test('the journal records requests and responses as the host does', async () => {
    // Given a handler that sends and sleeps without a label
    const module = moduleOf((ctx) => {
      ctx.sendEmail('welcome', { vars: { plan: 'pro' } });
      ctx.sleep(days(1) + hours(2));
      ctx.checkpoint('done');
    });
    const kit = testModule(module, { startAt: 0 });

    // When it runs
    const run = await kit.run('j', { person });

    // Then each step holds the host's request and response
    assert.deepEqual(
      run.steps.map((s) => [s.kind, s.request, s.response, s.recordedAt]),
      [
        ['send-email', { template: 'welcome', to: null, vars: { plan: 'pro' } }, { ok: 'email-1', status: 'queued', reason: null }, 0],
        ['sleep', { durationMs: 93_600_000, label: 'sleep 1day 2h' }, { wakeAt: 93_600_000 }, 0],
        ['checkpoint', { label: 'done' }, null, 93_600_000],
      ],
    );
  });

  test('log lines are written once: silent while the handler replays', async () => {
    // Given a handler that logs before and after a sleep
    const module = moduleOf(async (ctx) => {
      ctx.info('before');
      await ctx.sleep(days(1));
      ctx.warn('after');
    });

    // When it runs over two activations
    const run = await testModule(module).run('j', { person });

    // Then each line was written by the activation that reached it at the frontier
    assert.deepEqual(
      run.logs.map((l) => [l.activation, l.level, l.message]),
      [
        [1, 'info', 'before'],
        [2, 'warn', 'after'],
      ],
    );
  });

  test('console output is the run log too, as in a built module: written once, not while replaying', async () => {
    const module = moduleOf(async (ctx) => {
      console.log('starting', { step: 1 });
      await ctx.sleep(days(1));
      console.error(new Error('odd'));
    });

    const run = await testModule(module).run('j', { person });

    assert.deepEqual(
      run.logs.map((l) => [l.activation, l.level, l.message.split('\n')[0]]),
      [
        [1, 'info', 'starting {"step":1}'],
        [2, 'error', 'Error: odd'],
      ],
    );
  });

  test('a handler that calls something else on replay fails as non-deterministic, in the host words', async () => {
    // Given a handler whose path depends on state outside ctx (a module-level counter)
    let activations = 0;
    const module = moduleOf((ctx) => {
      activations++;
      ctx.sendEmail(activations === 1 ? 'a' : 'b');
      ctx.sleep(days(1), 'a day');
    });

    // When the second activation replays
    const run = await testModule(module).run('j', { person });

    // Then the run fails at the step it called differently, naming both calls
    assert.equal(run.status, 'failed');
    assert.equal(
      run.error,
      'non-deterministic replay at step 0: the journal recorded send-email {"template":"a","to":null,"vars":{}} ' +
        'but the handler called send-email {"template":"b","to":null,"vars":{}}',
    );
    // and the failed activation committed nothing: the journal and the emails are the first activation's
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['send-email', 'sleep'],
    );
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['a'],
    );
    assert.equal(run.activations[1]?.committed, false);
  });

  test('a call of another kind at a recorded step is a divergence too', async () => {
    // Given a handler that first sleeps, and on replay checkpoints instead
    let first = true;
    const module = moduleOf((ctx) => {
      if (first) {
        first = false;
        ctx.sleep(hours(1), 'an hour');
      } else {
        ctx.checkpoint('here');
      }
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(
      run.error,
      'non-deterministic replay at step 0: the journal recorded sleep {"durationMs":3600000,"label":"an hour"} ' +
        'but the handler called checkpoint {"label":"here"}',
    );
  });

  test('a handler that finishes before re-walking its whole journal diverges against its return', async () => {
    // Given a handler that takes a shorter path once it has slept
    let activations = 0;
    const module = moduleOf((ctx) => {
      activations++;
      if (activations > 1) return;
      ctx.sleep(days(1), 'a day');
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'failed');
    assert.equal(
      run.error,
      'non-deterministic replay at step 0: the journal recorded sleep {"durationMs":86400000,"label":"a day"} ' +
        'but the handler called return (the handler finished)',
    );
  });

  test('a handler that steers by Math.random() is caught: it replays another path', async () => {
    // Given an A/B split on Math.random() instead of ctx.random()
    const module = moduleOf(async (ctx) => {
      await ctx.sendEmail(Math.random() < 0.5 ? 'a' : 'b');
      await ctx.sleep(days(1), 'a day');
    });

    // When it runs (the kit answers Math.random() differently in every activation)
    const run = await testModule(module).run('j', { person });

    // Then the replay diverges, and the run says why
    assert.equal(run.status, 'failed');
    assert.match(run.error ?? '', /^non-deterministic replay at step 0: the journal recorded send-email \{"template":"a"/);
    assert.match(run.warnings[0] ?? '', /^the handler called Math\.random\(\) 2 times: it is not journaled/);
  });

  test('a handler that steers by Date.now() is caught: a replay sees a later time', async () => {
    // Given a handler that decides by the wall clock whether the user is "new"
    const start = Date.UTC(2026, 0, 5);
    const module = moduleOf((ctx) => {
      ctx.sleep(days(2), 'two days');
      ctx.sendEmail(Date.now() < start + days(3) ? 'welcome' : 'late');
      ctx.sleep(days(2), 'two more days');
    });

    const run = await testModule(module, { startAt: start }).run('j', { person });

    // Then the activation after the second sleep picks the other template and diverges
    assert.equal(run.status, 'failed');
    assert.match(run.error ?? '', /^non-deterministic replay at step 1: the journal recorded send-email \{"template":"welcome"/);
    assert.match(run.warnings.join('\n'), /Date\.now\(\) 2 times: it is not journaled/);
  });

  test('ctx.random() and ctx.now() replay the same answers, so they may steer the path', async () => {
    const module = moduleOf(async (ctx) => {
      await ctx.sendEmail(ctx.random() < 0.5 ? 'a' : 'b');
      await ctx.sleep(days(1), 'a day');
      await ctx.sendEmail(ctx.now() > 0 ? 'tips' : 'late');
    });

    const run = await testModule(module, { random: [0.75] }).run('j', { person });

    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['b', 'tips'],
    );
    assert.deepEqual(run.warnings, []);
  });

  test('random values come from the script, the run first, then a seeded sequence', async () => {
    // Given scripted values for the kit and the run, then the seeded rest
    const drawn: bigint[] = [];
    const module = moduleOf((ctx) => {
      for (let i = 0; i < 4; i++) drawn.push(BigInt(ctx.randomInt(1_000_000)));
    });

    const kit = testModule(module, { random: [7n], seed: 42 });
    await kit.run('j', { person, random: [3n] });
    const first = [...drawn];
    drawn.length = 0;
    await testModule(module, { random: [7n], seed: 42 }).run('j', { person, random: [3n] });

    // Then the run's come first, then the kit's, then a sequence that is the same for the same seed
    assert.deepEqual(first.slice(0, 2), [3n, 7n]);
    assert.deepEqual(drawn, first);
  });
});
