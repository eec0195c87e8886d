/**
 * Handlers: sync or async, they fail a run with the message the built component would give;
 * the kit cannot stop a handler from catching what it throws to end an activation, so it keeps
 * the host's outcome and reports a handler that went on; runaway runs hit the host's step cap
 * or the kit's activation cap.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, HostError, days, defineModule, hours, journey, template } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const person = { key: 'u1', email: 'ada@example.com' };
const templates = ['hello', 'bye'].map((key) => template({ key, subject: key, body: key }));

function moduleOf(run: (ctx: Ctx) => void | Promise<void>) {
  return defineModule({ journeys: [journey({ id: 'j', trigger: 'go', run })], templates });
}

describe('sync and async handlers', () => {
  test('a sync handler and an async one that awaits between steps take the same steps', async () => {
    const sync = moduleOf((ctx) => {
      ctx.sendEmail('hello');
      ctx.sleep(days(1), 'a day');
      ctx.sendEmail('bye');
    });
    const async_ = moduleOf(async (ctx) => {
      await ctx.sendEmail('hello');
      await new Promise((resolve) => setTimeout(resolve, 1));
      await ctx.sleep(days(1), 'a day');
      await Promise.resolve();
      await ctx.sendEmail('bye');
    });

    const a = await testModule(sync).run('j', { person });
    const b = await testModule(async_).run('j', { person });

    assert.equal(a.status, 'completed');
    assert.equal(b.status, 'completed');
    assert.deepEqual(b.steps, a.steps);
  });
});

describe('failures', () => {
  test('a handler that throws fails the run with the error and its stack, as the component reports it', async () => {
    const module = moduleOf(async (ctx) => {
      await ctx.sleep(hours(1), 'an hour');
      throw new RangeError('the plan is out of range');
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'failed');
    assert.match(run.error ?? '', /^the journey returned an error: RangeError: the plan is out of range\n {4}at .*handlers\.test\.ts/);
    // and the failed activation's steps are not kept; the sleep is
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['sleep'],
    );
    assert.equal(run.activations[1]?.outcome, 'failed');
  });

  test('a thrown string or value reads as the component writes it', async () => {
    const str = await testModule(
      moduleOf(() => {
        throw 'plain words';
      }),
    ).run('j', { person });
    const obj = await testModule(
      moduleOf(async () => {
        throw { code: 7 };
      }),
    ).run('j', { person });

    assert.equal(str.error, 'the journey returned an error: plain words');
    assert.equal(obj.error, 'the journey returned an error: thrown: {"code":7}');
  });

  test('a HostError the handler handles does not fail the run', async () => {
    const module = moduleOf((ctx) => {
      try {
        ctx.sendEmail('missing');
      } catch (e) {
        if (!(e instanceof HostError)) throw e;
        ctx.sendEmail('hello');
      }
    });
    const run = await testModule(module).run('j', { person });
    assert.equal(run.status, 'completed');
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['hello'],
    );
  });
});

describe('a handler that catches the suspension', () => {
  test('the activation is suspended even if the handler swallowed it and returned', async () => {
    // Given a handler that wraps everything in a try/catch that swallows every error
    const module = moduleOf((ctx) => {
      try {
        ctx.sendEmail('hello');
        ctx.sleep(days(1), 'a day');
        ctx.sendEmail('bye');
      } catch {
        // swallowed
      }
    });

    // When it runs
    const run = await testModule(module).run('j', { person });

    // Then it behaves as on the host, where the suspension cannot be caught
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.activations.map((a) => a.outcome),
      ['suspended', 'completed'],
    );
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['hello', 'bye'],
    );
  });

  test('a ctx call after a swallowed suspension fails the run, naming both calls', async () => {
    // Given a handler that goes on to send another email when a step "fails"
    const module = moduleOf(async (ctx) => {
      try {
        await ctx.sleep(days(1), 'a day');
      } catch {
        await ctx.sendEmail('bye');
      }
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'failed');
    assert.match(
      run.error ?? '',
      /^waymark test kit: the handler called ctx\.sendEmail\(\) after its activation was suspended at ctx\.sleep\(\) \(step 0\): it caught the suspension/,
    );
    assert.deepEqual(run.emails, [], 'nothing after the suspension was performed');
  });

  test('the same goes for a wait: the report names the wait step', async () => {
    const module = moduleOf((ctx) => {
      ctx.checkpoint('before');
      try {
        ctx.waitFor('paid', { timeout: days(1) });
      } catch {
        ctx.checkpoint('gave up');
      }
    });

    const run = await testModule(module).run('j', { person });

    assert.match(
      run.error ?? '',
      /^waymark test kit: the handler called ctx\.checkpoint\(\) after its activation was suspended at ctx\.waitFor\(\) \(step 1\)/,
    );
  });
});

describe('caps', () => {
  test('a run that records more steps than the cap fails as the host fails it', async () => {
    const module = moduleOf((ctx) => {
      for (;;) ctx.checkpoint('again');
    });

    const run = await testModule(module).run('j', { person });

    assert.equal(run.status, 'failed');
    assert.equal(
      run.error,
      'the run reached its cap of 10000 journal steps (a handler that loops without end?); raise it with `waymark serve --max-run-steps`',
    );
  });

  test('the step cap counts the whole journal, across activations', async () => {
    const module = moduleOf((ctx) => {
      for (;;) ctx.sleep(hours(1), 'tick');
    });

    const run = await testModule(module, { maxRunSteps: 5 }).run('j', { person });

    assert.equal(run.activations.length, 6);
    assert.match(run.error ?? '', /^the run reached its cap of 5 journal steps/);
    assert.equal(run.steps.length, 5);
  });

  test('a run that never ends hits the kit activation cap, a mistake in the test', async () => {
    const module = moduleOf(async (ctx) => {
      for (let week = 0; ; week++) await ctx.sleep(days(7), `week ${week}`);
    });

    await assert.rejects(testModule(module, { maxActivations: 20 }).run('j', { person }), {
      name: 'TestKitError',
      message: /reached the kit's cap of 20 activations/,
    });
  });

  test('a payload over the host limit fails the run', async () => {
    const module = moduleOf((ctx) => {
      ctx.checkpoint('x'.repeat(70_000));
    });
    const run = await testModule(module).run('j', { person });
    assert.equal(run.error, 'the checkpoint label is 70000 bytes, over the 65536-byte limit');
  });
});
