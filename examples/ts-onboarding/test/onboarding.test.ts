/**
 * The onboarding example's behaviour, pinned with the Waymark test kit: the kit runs the
 * handlers against a fake host with virtual time, replaying each run from the top on every
 * activation as the host does.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { days, hours, person, testModule } from '@waymark/guest/testing';
import module from '../src/index.ts';

const SIGNUP = Date.parse('2026-01-05T09:00:00Z');
const ada = person('u1', { email: 'ada@example.com', properties: { name: 'Ada' } });

/** A kit whose clock starts at Ada's signup. */
const kit = () => testModule(module, { startAt: SIGNUP });

describe('onboarding', () => {
  test('a user who creates a named project within three days of the first day is congratulated, naming it', async () => {
    // Given Ada signs up and creates "Apollo" two days later
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [{ name: 'project.created', after: days(2), properties: { name: 'Apollo' } }],
    });

    // Then she was welcomed, and congratulated when the project came
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['onboarding-welcome', 'onboarding-first-project'],
    );
    assert.deepEqual(run.emails[0]?.vars, { name: 'Ada' });
    assert.deepEqual(run.emails[1]?.vars, { name: 'Ada', project: 'Apollo' });
    assert.equal(run.emails[1]?.subject, 'Apollo is live');
    assert.equal(run.emails[1]?.at, SIGNUP + days(2));
    // and the journal holds the steps in order: the wait is a wait-for-event then a wait-resolved
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['send-email', 'sleep', 'wait-for-event', 'wait-resolved', 'send-email'],
    );
    assert.deepEqual(run.steps[1]?.request, { durationMs: days(1), label: 'one day after signing up' });
    // and each activation replayed what the earlier ones did
    assert.deepEqual(
      run.activations.map((a) => [a.wokenBy, a.replayed.length, a.performed.length]),
      [
        ['start', 0, 2],
        ['timer', 2, 1],
        ['event', 3, 2],
      ],
    );
    assert.deepEqual(
      run.logs.map((l) => l.message),
      ['u1 created Apollo'],
    );
    assert.deepEqual(run.warnings, []);
  });

  test('a user who creates no project gets a nudge when the wait times out, four days after signing up', async () => {
    const run = await kit().run('ts-onboarding', { person: ada });

    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => [e.template, e.vars]),
      [
        ['onboarding-welcome', { name: 'Ada' }],
        ['onboarding-nudge', { name: 'Ada' }],
      ],
    );
    assert.equal(run.activations.at(-1)?.wokenBy, 'timeout');
    assert.equal(run.endedAt, SIGNUP + days(4));
    assert.deepEqual(run.steps[3]?.response, { timedOut: true });
    // and its console.warn went to the run's log, once
    assert.deepEqual(
      run.logs.map((l) => [l.level, l.message]),
      [['warn', 'u1 has no project yet']],
    );
  });

  test('a project without a name does not end the wait', async () => {
    // Given the only project Ada creates has no name
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [{ name: 'project.created', after: days(2), properties: {} }],
    });

    // Then the event woke the run, which found no match and waited on until the timeout
    assert.deepEqual(
      run.activations.map((a) => [a.wokenBy, a.outcome]),
      [
        ['start', 'suspended'],
        ['timer', 'suspended'],
        ['event', 'suspended'],
        ['timeout', 'completed'],
      ],
    );
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['onboarding-welcome', 'onboarding-nudge'],
    );
  });

  test('an unnamed project then a named one: the named one is congratulated', async () => {
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [
        { name: 'project.created', after: days(1) + hours(2) },
        { name: 'project.created', after: days(3), properties: { name: 'Gemini' } },
      ],
    });
    assert.deepEqual(run.emails[1]?.vars, { name: 'Ada', project: 'Gemini' });
  });

  test('a project created on the first day is not seen: the wait begins after the one-day sleep', async () => {
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [{ name: 'project.created', after: hours(12), properties: { name: 'Early bird' } }],
    });
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['onboarding-welcome', 'onboarding-nudge'],
    );
  });

  test('a person without a name is greeted as "there"', async () => {
    const run = await kit().run('ts-onboarding', { person: { key: 'u2', email: 'bob@example.com' } });
    assert.deepEqual(run.emails[0]?.vars, { name: 'there' });
    assert.equal(run.emails[0]?.subject, 'Welcome aboard, there!');
  });

  test('deleting the account ends the run at once, whatever it was doing', async () => {
    // Given Ada deletes her account while the journey waits for her first project
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [{ name: 'account.deleted', after: days(2) }],
    });

    // Then the run exited then, and sent nothing more
    assert.equal(run.status, 'exited');
    assert.equal(run.endedAt, SIGNUP + days(2));
    assert.equal(run.exitedBy?.name, 'account.deleted');
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['onboarding-welcome'],
    );
  });

  test('a person is onboarded once', async () => {
    const k = kit();
    await k.run('ts-onboarding', { person: ada });
    const again = await k.run('ts-onboarding', { person: 'u1' });
    assert.equal(again.status, 'skipped');
    assert.equal(again.skipReason, 'already_entered_once');
  });
});

describe('active creators', () => {
  test('the bucket holds people with at least three projects in 30 days', () => {
    const bucket = kit().describe().buckets[0];
    assert.equal(bucket?.id, 'ts-active-creators');
    assert.deepEqual(bucket?.criteria, {
      type: 'event',
      event: 'project.created',
      check: 'count',
      operator: 'gte',
      value: 3,
      withinMs: days(30),
    });
    assert.deepEqual(bucket?.reactions[0]?.on, { enter: { firstEntryOnly: true } });
  });

  test('on first entry, a creator is thanked with their project count and marked on their contact', async () => {
    // Given Ada created four projects, three of them within the last 30 days
    const k = kit();
    k.addPerson(
      person('u1', {
        email: 'ada@example.com',
        properties: { name: 'Ada' },
        events: [
          { name: 'project.created', ago: days(40) },
          { name: 'project.created', ago: days(20) },
          { name: 'project.created', ago: days(3) },
          { name: 'project.created', ago: hours(1) },
        ],
      }),
    );

    // When she enters the bucket
    const run = await k.react('ts-active-creators', 'enter', { person: 'u1' });

    // Then the reaction thanked her for three projects and marked her contact
    assert.equal(run.status, 'completed', run.timeline());
    assert.equal(run.journeyId, 'bucket-ts-active-creators-on-enter');
    assert.deepEqual(
      run.emails.map((e) => [e.template, e.vars, e.body]),
      [['onboarding-active-creator', { projects: 3 }, '3 projects in a month. Thank you for building with us.\n']],
    );
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      ['history-event-count', 'send-email', 'update-contact'],
    );
    assert.deepEqual(
      run.contactUpdates.map((u) => u.properties),
      [{ active_creator: true }],
    );
    // and the patch is on her contact for the runs that come after
    assert.deepEqual(k.person('u1')?.properties, { name: 'Ada', active_creator: true });
    assert.deepEqual(k.bucketMembers('ts-active-creators'), ['u1']);
  });

  test('a creator who enters again is not thanked twice', async () => {
    const run = await kit().react('ts-active-creators', 'enter', { person: ada, entryCount: 2 });
    assert.equal(run.status, 'skipped');
    assert.equal(run.skipReason, 'trigger_conditions_not_met');
  });
});
