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
  test('a user who creates a named project within three days is congratulated, naming it, then gets the first-week email', async () => {
    // Given Ada signs up and creates "Apollo" two days later
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [{ name: 'project.created', after: days(2), properties: { name: 'Apollo' } }],
    });

    // Then she was welcomed, congratulated when the project came, and a week after signing up
    // told how many projects she created
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => [e.template, e.vars, e.at]),
      [
        ['onboarding-welcome', { name: 'Ada' }, SIGNUP],
        ['onboarding-first-project', { name: 'Ada', project: 'Apollo' }, SIGNUP + days(2)],
        ['onboarding-first-week', { name: 'Ada', projects: 1 }, SIGNUP + days(7)],
      ],
    );
    assert.equal(run.emails[1]?.subject, 'Apollo is live');
    assert.equal(run.emails[2]?.subject, 'Your first week, Ada');
    assert.equal(run.endedAt, SIGNUP + days(7));
    // and the journal holds the steps in order: the wait is a wait-for-event then a wait-resolved
    assert.deepEqual(
      run.steps.map((s) => s.kind),
      [
        'send-email',
        'wait-for-event',
        'wait-resolved',
        'send-email',
        'sleep-until',
        'history-event-count',
        'send-email',
      ],
    );
    assert.deepEqual(run.steps[4]?.request, { at: SIGNUP + days(7), label: 'a week after signing up' });
    // and each activation replayed what the earlier ones did
    assert.deepEqual(
      run.activations.map((a) => [a.wokenBy, a.replayed.length, a.performed.length]),
      [
        ['start', 0, 2],
        ['event', 2, 3],
        ['timer', 5, 2],
      ],
    );
    // and the log line was written once, not again on the replay
    assert.deepEqual(
      run.logs.map((l) => [l.level, l.message]),
      [['info', 'u1 created Apollo']],
    );
    assert.deepEqual(run.warnings, []);
  });

  test('a project created on the first day is congratulated: the wait begins with the welcome', async () => {
    // Given Ada creates "Early bird" two hours after signing up
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [{ name: 'project.created', after: hours(2), properties: { name: 'Early bird' } }],
    });

    // Then she is congratulated then, not nudged
    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => [e.template, e.at]),
      [
        ['onboarding-welcome', SIGNUP],
        ['onboarding-first-project', SIGNUP + hours(2)],
        ['onboarding-first-week', SIGNUP + days(7)],
      ],
    );
    assert.equal(run.emails[1]?.subject, 'Early bird is live');
  });

  test('a user who creates no project gets a nudge when the wait times out, three days after signing up', async () => {
    const run = await kit().run('ts-onboarding', { person: ada });

    assert.equal(run.status, 'completed', run.timeline());
    assert.deepEqual(
      run.emails.map((e) => [e.template, e.vars, e.at]),
      [
        ['onboarding-welcome', { name: 'Ada' }, SIGNUP],
        ['onboarding-nudge', { name: 'Ada' }, SIGNUP + days(3)],
        ['onboarding-first-week', { name: 'Ada', projects: 0 }, SIGNUP + days(7)],
      ],
    );
    assert.deepEqual(run.steps[2]?.response, { timedOut: true });
    assert.deepEqual(
      run.activations.map((a) => a.wokenBy),
      ['start', 'timeout', 'timer'],
    );
    assert.equal(run.endedAt, SIGNUP + days(7));
    // and its console.warn went to the run's log, once
    assert.deepEqual(
      run.logs.map((l) => [l.level, l.message]),
      [['warn', 'u1 has no project yet']],
    );
  });

  test('a project without a name does not end the wait, but counts in the first week', async () => {
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
        ['event', 'suspended'],
        ['timeout', 'suspended'],
        ['timer', 'completed'],
      ],
    );
    assert.deepEqual(
      run.emails.map((e) => [e.template, e.vars]),
      [
        ['onboarding-welcome', { name: 'Ada' }],
        ['onboarding-nudge', { name: 'Ada' }],
        ['onboarding-first-week', { name: 'Ada', projects: 1 }],
      ],
    );
  });

  test('an unnamed project then a named one: the named one is congratulated', async () => {
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [
        { name: 'project.created', after: hours(20) },
        { name: 'project.created', after: days(2), properties: { name: 'Gemini' } },
      ],
    });
    assert.deepEqual(run.emails[1]?.vars, { name: 'Ada', project: 'Gemini' });
    assert.equal(run.emails[1]?.at, SIGNUP + days(2));
  });

  test('the first-week email counts the projects created since signing up', async () => {
    // Given Ada had a project before signing up, and creates three in her first week
    const run = await kit().run('ts-onboarding', {
      person: person('u1', {
        email: 'ada@example.com',
        properties: { name: 'Ada' },
        events: [{ name: 'project.created', ago: days(10), properties: { name: 'Old' } }],
      }),
      events: [
        { name: 'project.created', after: days(1), properties: { name: 'Apollo' } },
        { name: 'project.created', after: days(4), properties: { name: 'Gemini' } },
        { name: 'project.created', after: days(6) },
      ],
    });

    // Then the week's email counts the three, not the one from before
    assert.equal(run.status, 'completed', run.timeline());
    const week = run.emails.at(-1);
    assert.equal(week?.template, 'onboarding-first-week');
    assert.deepEqual(week?.vars, { name: 'Ada', projects: 3 });
    assert.equal(week?.body, 'Hi Ada,\n\nYou have been with us for a week. Projects created so far: 3.\n');
    // and the count is journaled with the instant it counts from: the run's start
    const count = run.steps.find((s) => s.kind === 'history-event-count');
    assert.deepEqual(count?.request, { personKey: null, name: 'project.created', sinceMs: SIGNUP });
  });

  test('the week is counted from the sign-up event, not from when the run started', async () => {
    // Given the sign-up happened two days before it reached the journey
    const run = await kit().run('ts-onboarding', {
      person: ada,
      trigger: { occurredAt: SIGNUP - days(2) },
      events: [{ name: 'project.created', after: hours(1), properties: { name: 'Apollo' } }],
    });

    // Then the first-week email goes out five days after the run started
    assert.equal(run.emails.at(-1)?.template, 'onboarding-first-week');
    assert.equal(run.emails.at(-1)?.at, SIGNUP + days(5));
  });

  test('a person without a name is greeted as "there"', async () => {
    const run = await kit().run('ts-onboarding', { person: { key: 'u2', email: 'bob@example.com' } });
    assert.deepEqual(run.emails[0]?.vars, { name: 'there' });
    assert.equal(run.emails[0]?.subject, 'Welcome aboard, there!');
  });

  test('deleting the account ends the run at once, while it waits for the first project', async () => {
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

  test('deleting the account ends the run at once, while it sleeps until the first week', async () => {
    const run = await kit().run('ts-onboarding', {
      person: ada,
      events: [
        { name: 'project.created', after: days(1), properties: { name: 'Apollo' } },
        { name: 'account.deleted', after: days(5) },
      ],
    });

    assert.equal(run.status, 'exited');
    assert.equal(run.endedAt, SIGNUP + days(5));
    assert.deepEqual(
      run.emails.map((e) => e.template),
      ['onboarding-welcome', 'onboarding-first-project'],
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
