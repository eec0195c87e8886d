/**
 * Emails: `sendEmail` resolves the recipient and the template as the host does (the tenant's
 * template first, then the module's), and records the email — queued, or suppressed when the
 * recipient unsubscribed or the journey emailed the address within its `suppress` window. A
 * refusal (unknown template, no recipient) is journaled and thrown as a HostError.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Ctx, HostError, days, defineModule, hours, journey, template } from '../src/index.js';
import { testModule } from '../src/testing/index.js';

const T0 = Date.UTC(2026, 0, 5, 9);
const ada = { key: 'u1', email: 'ada@example.com', properties: { name: 'Ada', team: { name: 'Apollo' } } };
const templates = [
  template({ key: 'welcome', subject: '  Welcome, {{ name }}!  ', body: 'Hi {{name}} of {{ team.name }}. {% if x %}x{% endif %}', html: '<p>{{ quote }}</p>' }),
  template({ key: 'digest', subject: 'Digest', body: 'Your digest' }),
];

function moduleOf(run: (ctx: Ctx) => void | Promise<void>, suppress?: number) {
  return defineModule({ journeys: [journey({ id: 'j', trigger: 'go', entryLimit: 'unlimited', suppress, run })], templates });
}

describe('emails', () => {
  test('an email is recorded with a stable id, its vars and a preview of what it says', async () => {
    const ids: string[] = [];
    const module = moduleOf((ctx) => {
      ids.push(ctx.sendEmail('welcome', { vars: { quote: 'a < b' } }));
      ids.push(ctx.sendEmail('digest', { to: 'Team@Example.com' }));
    });

    const run = await testModule(module, { startAt: T0 }).run('j', { person: ada });

    assert.deepEqual(ids, ['email-1', 'email-2']);
    const [welcome, digest] = run.emails;
    assert.deepEqual(
      { ...welcome },
      {
        id: 'email-1',
        runId: 'run-1',
        journeyId: 'j',
        step: 0,
        at: T0,
        template: 'welcome',
        to: 'ada@example.com',
        vars: { quote: 'a < b' },
        status: 'queued',
        suppressedReason: null,
        subject: 'Welcome, Ada!',
        body: 'Hi Ada of Apollo. {% if x %}x{% endif %}',
        html: '<p>a &lt; b</p>',
      },
    );
    assert.equal(digest?.to, 'team@example.com');
    assert.deepEqual(run.steps[1]?.request, { template: 'digest', to: 'Team@Example.com', vars: {} });
  });

  test('an unknown template fails the send: journaled, and thrown as a HostError', async () => {
    const module = moduleOf((ctx) => {
      ctx.sendEmail('nope');
    });

    const run = await testModule(module).run('j', { person: ada });

    assert.equal(run.status, 'failed');
    assert.match(run.error ?? '', /^the journey returned an error: HostError: send-email \(template "nope"\) failed: unknown template "nope"\n {4}at /);
    assert.deepEqual(run.emails, []);
  });

  test('a refused send is a journaled step: a handler that handles it replays the same refusal', async () => {
    const caught: string[] = [];
    const module = moduleOf(async (ctx) => {
      try {
        await ctx.sendEmail('nope');
      } catch (e) {
        if (!(e instanceof HostError)) throw e;
        caught.push(e.reason);
      }
      await ctx.sleep(days(1), 'a day');
    });

    const run = await testModule(module).run('j', { person: ada });

    assert.equal(run.status, 'completed');
    assert.deepEqual(caught, ['unknown template "nope"', 'unknown template "nope"']);
    assert.deepEqual(run.steps[0]?.response, { error: 'unknown template "nope"' });
  });

  test("a tenant's own template wins over the module's, and is known when the module has none", async () => {
    const module = moduleOf((ctx) => {
      ctx.sendEmail('digest');
      ctx.sendEmail('tenant-only', { vars: { n: 3 } });
    });
    const kit = testModule(module, {
      tenantTemplates: [
        { key: 'digest', subject: 'Tenant digest', body: 'Ours' },
        { key: 'tenant-only', subject: '{{ n }} things', body: '' },
      ],
    });

    const run = await kit.run('j', { person: ada });

    assert.deepEqual(
      run.emails.map((e) => e.subject),
      ['Tenant digest', '3 things'],
    );
  });

  test('a person without an address, sent to without a recipient, fails the send', async () => {
    const module = moduleOf((ctx) => {
      ctx.sendEmail('digest');
    });
    const run = await testModule(module).run('j', { person: { key: 'anon-7' } });
    assert.match(
      run.error ?? '',
      /HostError: send-email \(template "digest"\) failed: person "anon-7" has no email address and the email names no recipient/,
    );
  });

  test('an address without an @ is refused', async () => {
    const reasons: string[] = [];
    const module = moduleOf((ctx) => {
      try {
        ctx.sendEmail('digest', { to: 'nobody' });
      } catch (e) {
        reasons.push((e as HostError).reason);
      }
    });
    await testModule(module).run('j', { person: ada });
    assert.deepEqual(reasons, ['"nobody" is not an email address']);
  });

  test('an email to someone who unsubscribed gets an id but is recorded as suppressed', async () => {
    // Given a person who unsubscribes while the run sleeps, and an address that opted out
    const module = moduleOf(async (ctx) => {
      await ctx.sendEmail('digest');
      await ctx.sleep(days(1), 'a day');
      const subscribed = ctx.isSubscribed();
      await ctx.sendEmail('digest', { vars: { subscribed } });
      await ctx.sendEmail('digest', { to: 'boss@example.com' });
    });
    const kit = testModule(module, { unsubscribed: ['BOSS@example.com'] });
    const run = await kit.run('j', { person: ada, until: kit.now + hours(1) });
    kit.unsubscribe('u1');

    // When the run goes on
    await run.resume();

    // Then the later emails have ids and are recorded, suppressed, and isSubscribed said so
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => [e.id, e.to, e.status, e.suppressedReason, e.vars]),
      [
        ['email-1', 'ada@example.com', 'queued', null, {}],
        ['email-2', 'ada@example.com', 'suppressed', 'unsubscribed', { subscribed: false }],
        ['email-3', 'boss@example.com', 'suppressed', 'unsubscribed', {}],
      ],
    );
    assert.deepEqual(run.steps[3]?.response, { ok: 'email-2', status: 'suppressed', reason: 'unsubscribed' });
  });

  test("the journey's suppress window suppresses a second email to the same address within it", async () => {
    // Given a journey that may email an address at most once a day, sending twice at once and
    // again after two days
    const module = moduleOf(async (ctx) => {
      await ctx.sendEmail('digest');
      await ctx.sendEmail('welcome');
      await ctx.sendEmail('digest', { to: 'other@example.com' });
      await ctx.sleep(days(2), 'two days');
      await ctx.sendEmail('digest');
    }, days(1));
    const kit = testModule(module);

    const first = await kit.run('j', { person: ada });
    // and another run of the same journey emailing the same address within the window
    const second = await kit.run('j', { person: { key: 'u2', email: 'ada@example.com' } });

    assert.deepEqual(
      first.emails.map((e) => [e.to, e.status, e.suppressedReason]),
      [
        ['ada@example.com', 'queued', null],
        ['ada@example.com', 'suppressed', 'journey_suppress_window'],
        ['other@example.com', 'queued', null],
        ['ada@example.com', 'queued', null],
      ],
    );
    assert.deepEqual(
      second.emails.map((e) => e.status),
      ['suppressed', 'suppressed', 'queued', 'queued'],
    );
  });

  test("emails sent before the test count for the suppress window of their journey", async () => {
    const module = moduleOf((ctx) => {
      ctx.sendEmail('digest');
    }, days(1));
    const kit = testModule(module, {
      startAt: T0,
      emails: [{ template: 'digest', to: 'ada@example.com', at: T0 - hours(23), journey: 'j' }],
    });
    const run = await kit.run('j', { person: ada });
    assert.equal(run.emails[0]?.suppressedReason, 'journey_suppress_window');
  });
});
