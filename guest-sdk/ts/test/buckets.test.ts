/**
 * Buckets: reads answer from the test's fixture (members in paging order, keyset cursors, the
 * host's page sizes); an unknown bucket is refused as on the host. Reactions run by their
 * bucket, with the transition event the host builds.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, HostError, type Member, bucket, days, defineModule, event, journey, template } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const T0 = Date.UTC(2026, 0, 5, 9);
const ada = { key: 'ada', email: 'ada@example.com' };

describe('bucket reads', () => {
  test('pages walk every member once; count and has answer from the fixture', async () => {
    // Given a handler that walks a bucket two members at a time
    const seen: unknown[] = [];
    const module = defineModule({
      journeys: [
        journey({
          id: 'report',
          trigger: 'go',
          run: (ctx: Ctx) => {
            const vip = ctx.bucket('vip');
            let cursor: string | null = null;
            do {
              const page = vip.members({ limit: 2, cursor });
              seen.push([page.members.map((m) => m.key), page.total]);
              cursor = page.nextCursor;
            } while (cursor !== null);
            seen.push(vip.count(), vip.has('c'), vip.has('z'));
            seen.push([...vip.eachMember()].length);
          },
        }),
      ],
    });
    const kit = testModule(module, {
      startAt: T0,
      buckets: { vip: ['a', 'b', { key: 'c', email: 'C@example.com', enteredAt: T0 - days(3), entryCount: 2 }, 'd', 'e'] },
    });

    // When it runs
    const run = await kit.run('report', { person: ada });

    // Then it saw every member once, three pages, and the count
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(seen, [[['a', 'b'], 5], [['c', 'd'], 5], [['e'], 5], 5, true, false, 5]);
    // and each page is one step, recorded as the host records it
    const pages = run.steps.filter((s) => s.kind === 'bucket-members');
    assert.equal(pages.length, 4);
    assert.deepEqual(pages[0]?.request, { bucket: 'vip', limit: 2, cursor: null });
    const second = pages[1]?.response as unknown as { ok: { members: Member[]; nextCursor: string | null; total: number } };
    assert.deepEqual(second.ok.members[0], { key: 'c', email: 'c@example.com', enteredAt: T0 - days(3), entryCount: 2 });
    assert.deepEqual(
      run.steps.filter((s) => s.kind !== 'bucket-members').map((s) => [s.kind, s.request, s.response]),
      [
        ['bucket-count', { bucket: 'vip' }, { ok: 5 }],
        ['bucket-has', { bucket: 'vip', key: 'c' }, { ok: true }],
        ['bucket-has', { bucket: 'vip', key: 'z' }, { ok: false }],
      ],
    );
  });

  test('a page holds 50 members by default and at most 100', async () => {
    const sizes: number[] = [];
    const module = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'go',
          run: (ctx) => {
            sizes.push(ctx.bucket('big').members().members.length, ctx.bucket('big').members({ limit: 500 }).members.length);
          },
        }),
      ],
    });
    const members = Array.from({ length: 150 }, (_, i) => `p${i}`);
    await testModule(module, { buckets: { big: members } }).run('j', { person: ada });
    assert.deepEqual(sizes, [50, 100]);
  });

  test("an unknown bucket is refused; the module's own buckets are known even when empty", async () => {
    const answers: unknown[] = [];
    const module = defineModule({
      journeys: [
        journey({
          id: 'j',
          trigger: 'go',
          run: (ctx) => {
            answers.push(ctx.bucket('mine').count());
            try {
              ctx.bucket('nope').count();
            } catch (e) {
              answers.push(e instanceof HostError ? e.message : e);
            }
          },
        }),
      ],
      buckets: [bucket({ id: 'mine', manual: true })],
    });
    const run = await testModule(module).run('j', { person: ada });
    assert.deepEqual(answers, [0, 'bucket-count failed: unknown bucket "nope"']);
    assert.deepEqual(run.steps[1]?.response, { error: 'unknown bucket "nope"' });
  });
});

describe('bucket reactions', () => {
  const thanked: unknown[] = [];
  const module = defineModule({
    buckets: [
      bucket({
        id: 'power',
        name: 'Power users',
        criteria: event('feature.used').within(days(7)).atLeast(5),
        onEnter: {
          firstEntryOnly: true,
          untilLeft: true,
          run: async (ctx) => {
            thanked.push(ctx.trigger.properties);
            await ctx.sendEmail('thanks');
            await ctx.sleep(days(3), 'three days');
            await ctx.sendEmail('tips');
          },
        },
        onLeave: { reasons: ['criteria'], run: (ctx) => void ctx.checkpoint(`left: ${ctx.trigger.string('reason')}`) },
        onDwell: [{ after: days(14), run: (ctx) => void ctx.checkpoint(`dwell ${ctx.trigger.number('dwellCount')}`) }],
      }),
    ],
    templates: ['thanks', 'tips'].map((key) => template({ key, subject: key, body: key })),
  });

  test('an enter reaction runs on the entered event the host builds, and the person becomes a member', async () => {
    thanked.length = 0;
    const kit = testModule(module, { startAt: T0 });

    const run = await kit.react('power', 'enter', { person: ada });

    assert.equal(run.journeyId, 'bucket-power-on-enter');
    assert.equal(run.status, 'completed');
    assert.equal(run.trigger.name, 'bucket:entered:power');
    assert.deepEqual(thanked[0], {
      bucketId: 'power',
      bucketName: 'Power users',
      transition: 'entered',
      source: 'event',
      entryCount: 1,
      isFirstEntry: true,
      userId: 'ada',
    });
    assert.deepEqual(kit.bucketMembers('power'), ['ada']);
  });

  test('a first-entry-only reaction skips a repeat entry', async () => {
    const run = await testModule(module).react('power', 'enter', { person: ada, entryCount: 2 });
    assert.equal(run.status, 'skipped');
    assert.equal(run.skipReason, 'trigger_conditions_not_met');
  });

  test('an enter reaction declared untilLeft exits when the person leaves the bucket', async () => {
    const kit = testModule(module, { startAt: T0 });
    const entered = await kit.react('power', 'enter', { person: ada, until: T0 + days(1) });

    const left = await kit.react('power', 'leave', { person: 'ada' });

    assert.equal(entered.status, 'exited');
    assert.equal(entered.exitedBy?.name, 'bucket:left:power');
    assert.deepEqual(left.steps[0]?.request, { label: 'left: criteria' });
    assert.deepEqual(kit.bucketMembers('power'), []);
  });

  test('a leave reaction filters by reason', async () => {
    const run = await testModule(module).react('power', 'leave', { person: ada, reason: 'maxDwell' });
    assert.equal(run.skipReason, 'trigger_conditions_not_met');
  });

  test('a dwell reaction runs on its dwell event', async () => {
    const run = await testModule(module).react('power', 'dwell', { person: ada, dwellCount: 1 });
    assert.equal(run.trigger.name, `bucket:dwell:power:after-${days(14)}`);
    assert.deepEqual(run.steps[0]?.request, { label: 'dwell 1' });
  });

  test('a bucket without that reaction is a mistake in the test', async () => {
    await assert.rejects(testModule(module).react('nope', 'enter', { person: ada }), /the module declares no bucket "nope"/);
  });
});
