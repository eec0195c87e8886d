/**
 * Starting runs: the kit applies the host's enrollment guards (a disabled journey, the trigger
 * filter, the entry limit, an unsubscribed person, a live run) and snapshots the person; what
 * handlers change (contact patches, emitted events) lands after the activation commits and is
 * seen by later runs only.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, days, defineModule, hours, journey, prop, template } from '../src/index.js';
import { person, testModule } from '../src/testing/index.js';

const T0 = Date.UTC(2026, 0, 5, 9);
const ada = person('u1', { email: ' Ada@Example.com ', properties: { name: 'Ada', plan: 'free' } });

async function upgrade(ctx: Ctx): Promise<void> {
  await ctx.sendEmail('hello', { vars: { plan: ctx.person.string('plan') } });
  await ctx.updateContact({ plan: 'pro', name: null });
  await ctx.emit('upgrade.offered', { plan: 'pro' });
  await ctx.emitFor('manager-7', 'report.offer', { about: ctx.person.key });
  await ctx.sleep(hours(1), 'an hour');
  await ctx.checkpoint(`still ${ctx.person.string('plan')}`);
}

const journeys = [
  journey({ id: 'once', trigger: 'go', entryLimit: 'once', run: upgrade }),
  journey({ id: 'weekly', trigger: 'go', entryLimit: { oncePer: days(7) }, run: upgrade }),
  journey({ id: 'always', trigger: 'go', entryLimit: 'unlimited', run: upgrade }),
  journey({ id: 'pro-only', trigger: 'plan.changed', where: prop('plan').eq('pro'), run: upgrade }),
  journey({ id: 'off', trigger: 'go', enabled: false, run: upgrade }),
];
const module = defineModule({ journeys, templates: [template({ key: 'hello', subject: 'Hi', body: 'Hi' })] });

describe('enrollment', () => {
  test('a run sees the person as they were when it started; its contact patch is seen by later runs', async () => {
    const kit = testModule(module, { startAt: T0 });

    // When a run patches the contact and then looks at its person again after a sleep
    const first = await kit.run('always', { person: ada });

    // Then it still saw the snapshot (emails are normalised as the host stores them)
    assert.deepEqual(first.person, { key: 'u1', email: 'ada@example.com', properties: { name: 'Ada', plan: 'free' } });
    assert.deepEqual(first.steps.at(-1)?.request, { label: 'still free' });
    assert.deepEqual(
      first.contactUpdates.map((u) => [u.personKey, u.properties, u.at]),
      [['u1', { plan: 'pro', name: null }, T0]],
    );
    // and the kit's person has the patch applied (null removes a key)
    assert.deepEqual(kit.person('u1'), { key: 'u1', email: 'ada@example.com', properties: { plan: 'pro' } });

    // When a later run starts for the same person, named by key
    const second = await kit.run('always', { person: 'u1' });

    // Then it sees the patched contact
    assert.deepEqual(second.person.properties, { plan: 'pro' });
    assert.deepEqual(second.emails[0]?.vars, { plan: 'pro' });
  });

  test('emitted events are recorded and stored for their person after the commit', async () => {
    const kit = testModule(module, { startAt: T0 });
    const run = await kit.run('always', { person: ada });

    assert.deepEqual(
      run.emitted.map((e) => [e.step, e.name, e.personKey, e.properties]),
      [
        [2, 'upgrade.offered', 'u1', { plan: 'pro' }],
        [3, 'report.offer', 'manager-7', { about: 'u1' }],
      ],
    );
    assert.deepEqual(
      run.steps.filter((s) => s.kind === 'trigger').map((s) => s.request),
      [
        { name: 'upgrade.offered', personKey: 'u1', properties: { plan: 'pro' } },
        { name: 'report.offer', personKey: 'manager-7', properties: { about: 'u1' } },
      ],
    );
    // and the report of the activation that emitted them says so
    assert.deepEqual(
      run.activations.map((a) => a.emitted.length),
      [2, 0],
    );
    assert.deepEqual(
      kit.events.filter((e) => e.source === 'emit').map((e) => [e.personKey, e.name, e.receivedAt]),
      [
        ['u1', 'upgrade.offered', T0],
        ['manager-7', 'report.offer', T0],
      ],
    );
  });

  test('a reserved event name is refused: the call throws a HostError the handler can handle', async () => {
    const reasons: string[] = [];
    const m = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'go',
          run: (ctx) => {
            try {
              ctx.emit('bucket:entered:vip');
            } catch (e) {
              reasons.push((e as Error).message);
            }
          },
        }),
      ],
    });
    const run = await testModule(m).run('j', { person: ada });
    assert.equal(run.status, 'completed');
    assert.deepEqual(reasons, ['trigger failed: "bucket:entered:vip": names starting with "bucket:" are reserved for bucket transitions']);
    assert.deepEqual(run.steps, []);
  });

  test("entry limit once: a person's second run is skipped", async () => {
    const kit = testModule(module, { startAt: T0 });
    const first = await kit.run('once', { person: ada });
    const second = await kit.run('once', { person: 'u1' });

    assert.equal(first.status, 'completed');
    assert.equal(second.status, 'skipped');
    assert.equal(second.skipReason, 'already_entered_once');
    assert.deepEqual(second.activations, []);
  });

  test('entry limit once-per: a run within the period is skipped, one after it starts', async () => {
    const kit = testModule(module, { startAt: T0 });
    await kit.run('weekly', { person: ada });
    const soon = await kit.run('weekly', { person: 'u1', at: T0 + days(6) });
    const later = await kit.run('weekly', { person: 'u1', at: T0 + days(7) });

    assert.equal(soon.skipReason, 'period_not_elapsed');
    assert.equal(later.status, 'completed');
  });

  test('prior runs from the fixture count for entry limits and journey history', async () => {
    const kit = testModule(module, {
      startAt: T0,
      people: [person('u2', { email: 'bob@example.com', runs: [{ journey: 'once', startedAt: T0 - days(30) }] })],
    });
    const run = await kit.run('once', { person: 'u2' });
    assert.equal(run.skipReason, 'already_entered_once');
  });

  test('a live run of the journey makes a new one skip', async () => {
    const kit = testModule(module, { startAt: T0 });
    const first = await kit.run('always', { person: ada, activations: 1 });
    const second = await kit.run('always', { person: 'u1' });

    assert.equal(first.status, 'waiting');
    assert.equal(second.skipReason, 'already_active');
  });

  test('the trigger filter decides on the trigger properties', async () => {
    const kit = testModule(module, { startAt: T0 });
    const free = await kit.run('pro-only', { person: ada, trigger: { properties: { plan: 'free' } } });
    const pro = await kit.run('pro-only', { person: 'u1', trigger: { properties: { plan: 'pro' } } });

    assert.equal(free.skipReason, 'trigger_conditions_not_met');
    assert.equal(pro.status, 'completed');
    assert.deepEqual(pro.trigger, { name: 'plan.changed', occurredAt: T0, properties: { plan: 'pro' } });
  });

  test('a disabled journey and an unsubscribed person start no run', async () => {
    const kit = testModule(module, { startAt: T0, people: [person('u3', { email: 'cy@example.com', subscribed: false })] });
    assert.equal((await kit.run('off', { person: ada })).skipReason, 'journey_disabled');
    assert.equal((await kit.run('always', { person: 'u3' })).skipReason, 'user_unsubscribed');
  });

  test('mistakes in the test are TestKitErrors, not failed runs', async () => {
    const kit = testModule(module, { startAt: T0 });
    await assert.rejects(kit.run('nope', { person: ada }), {
      name: 'TestKitError',
      message: 'unknown handler "nope": this module\'s journeys are "once", "weekly", "always", "pro-only", "off"',
    });
    await assert.rejects(kit.run('once', { person: ada, trigger: { name: 'other' } }), /"once" is triggered by "go", not "other"/);
    await assert.rejects(kit.run('once', { person: 'stranger' }), /the kit knows no person "stranger"/);
  });

  test('history answers from the kit: past events, runs and emails', async () => {
    const reads: unknown[] = [];
    const m = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'go',
          entryLimit: 'unlimited',
          run: (ctx) => {
            reads.push(ctx.countEvents('login'), ctx.countEvents('login', { within: days(7) }), ctx.countEvents('go'));
            reads.push(ctx.countEvents('login', { since: 'runStart' }), ctx.countEvents('login', { person: 'u2' }));
            reads.push(ctx.journeyHistory('j'), ctx.emailHistory('hello'), ctx.emailHistory('hello', { to: 'bob@example.com' }));
          },
        }),
      ],
      templates: [template({ key: 'hello', subject: 'Hi', body: 'Hi' })],
    });
    const kit = testModule(m, {
      startAt: T0,
      emails: [
        { template: 'hello', to: 'ADA@example.com', at: T0 - days(2) },
        { template: 'hello', to: 'ada@example.com', at: T0 - days(1), status: 'suppressed' },
      ],
    });
    kit.addPerson(
      person('u1', {
        email: 'ada@example.com',
        events: [
          { name: 'login', ago: days(10) },
          { name: 'login', ago: days(3) },
          { name: 'login', at: T0 },
        ],
        runs: [{ journey: 'j', startedAt: T0 - days(20), endedAt: T0 - days(19) }],
      }),
    );

    const run = await kit.run('j', { person: 'u1' });

    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(reads, [
      3,
      2,
      1,
      1,
      0,
      { entries: 2, completed: 1, lastCompletedAt: T0 - days(19) },
      { count: 2, lastSentAt: T0 - days(2) },
      { count: 0, lastSentAt: null },
    ]);
    assert.deepEqual(run.steps[3]?.request, { personKey: null, name: 'login', sinceMs: T0 });
    assert.deepEqual(run.steps[3]?.kind, 'history-event-count');
  });
});
