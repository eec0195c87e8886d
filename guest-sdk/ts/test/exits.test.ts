/**
 * Exit rules: an event matching one of the journey's `exitOn` rules (its name, and its
 * `where`) that arrives while the run is live ends it, `exited`, at that instant — the host
 * ends runs in the transaction that stores the event, so the run is never activated again.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, days, defineModule, hours, journey, prop, template } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const T0 = Date.UTC(2026, 0, 5, 9);
const person = { key: 'u1', email: 'ada@example.com' };

async function drip(ctx: Ctx): Promise<void> {
  await ctx.sendEmail('day-0');
  await ctx.sleep(days(2), 'two days');
  await ctx.sendEmail('day-2');
  await ctx.waitFor('app.opened', { timeout: days(5) });
  await ctx.sendEmail('day-7');
}

const module = defineModule({
  journeys: [
    journey({
      id: 'drip',
      trigger: 'user.signed_up',
      entryLimit: 'unlimited',
      exitOn: ['account.deleted', { event: 'plan.changed', where: prop('plan').eq('enterprise') }],
      run: drip,
    }),
  ],
  templates: ['day-0', 'day-2', 'day-7'].map((key) => template({ key, subject: key, body: key })),
});

describe('exit rules', () => {
  test('an exit event during a sleep ends the run at that instant, before its next activation', async () => {
    const kit = testModule(module, { startAt: T0 });

    const run = await kit.run('drip', { person, events: [{ name: 'account.deleted', after: days(1) }] });

    assert.equal(run.status, 'exited');
    assert.equal(run.endedAt, T0 + days(1));
    assert.equal(run.exitedBy?.name, 'account.deleted');
    assert.equal(run.activations.length, 1);
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['day-0'],
    );
    assert.equal(kit.now, T0 + days(1));
  });

  test('an exit rule with a where ends the run only for events it holds for', async () => {
    const run = await testModule(module, { startAt: T0 }).run('drip', {
      person,
      events: [
        { name: 'plan.changed', after: hours(1), properties: { plan: 'pro' } },
        { name: 'plan.changed', after: days(3), properties: { plan: 'enterprise' } },
      ],
    });

    assert.equal(run.status, 'exited');
    assert.equal(run.endedAt, T0 + days(3));
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['day-0', 'day-2'],
    );
  });

  test('an exit event that is also awaited ends the run rather than the wait', async () => {
    const exits = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'go',
          exitOn: ['stop'],
          run: (ctx) => {
            ctx.waitFor('stop', { timeout: days(1) });
            ctx.checkpoint('after the wait');
          },
        }),
      ],
    });

    const run = await testModule(exits).run('j', { person, events: [{ name: 'stop', after: hours(1) }] });

    assert.equal(run.status, 'exited');
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['wait-for-event'],
    );
  });

  test('an exit event after the run ended changes nothing', async () => {
    const run = await testModule(module, { startAt: T0 }).run('drip', {
      person,
      events: [
        { name: 'app.opened', after: days(3) },
        { name: 'account.deleted', after: days(4) },
      ],
    });
    assert.equal(run.status, 'completed');
    assert.equal(run.endedAt, T0 + days(3));
  });

  test("an event the handler emits for its own person ends its run when it matches an exit rule", async () => {
    // Given a journey that emits its own exit event, then sleeps
    const selfExit = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'go',
          exitOn: ['done'],
          run: (ctx) => {
            ctx.emit('done', { why: 'finished early' });
            ctx.sleep(days(1), 'a day');
            ctx.checkpoint('never');
          },
        }),
      ],
    });

    // When it runs: the event is ingested after the activation commits, while the run sleeps
    const run = await testModule(selfExit, { startAt: T0 }).run('j', { person });

    // Then it exits at that commit
    assert.equal(run.status, 'exited');
    assert.equal(run.endedAt, T0);
    assert.equal(run.exitedBy?.source, 'emit');
    assert.deepEqual(run.exitedBy?.properties, { why: 'finished early' });
  });
});
