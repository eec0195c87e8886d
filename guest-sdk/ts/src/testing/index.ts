/**
 * # @waymark/guest/testing — run a module's handlers in node
 *
 * {@link testModule} runs a module's journeys and bucket reactions against a fake host with a
 * virtual clock, keeping the real host's rules:
 *
 * - **Replay.** A run is activated again and again; each activation calls the handler from the
 *   top against the run's journal. Every `ctx` call but logging is a journaled step: recorded
 *   steps answer from the journal, the first new one (the frontier) is performed and recorded.
 *   A call whose kind or request differs from the journal's fails the run as
 *   `non-deterministic replay at step N: …`, in the host's words.
 * - **Time.** `sleep` and `sleepUntil` suspend the run; the clock jumps to the next thing due.
 *   `waitFor` suspends until the first matching event the test sends, or the timeout.
 * - **Effects.** Emails are checked (template, recipient) and recorded, suppressed for
 *   unsubscribed people and within the journey's `suppress` window; emitted events and contact
 *   updates are recorded and applied after the activation commits.
 * - **The world.** History and bucket reads answer from fixtures; exit rules end runs; entry
 *   limits, trigger filters and the step cap apply.
 *
 * Tests run with node's test runner (`node --import tsx --test test/*.test.ts`).
 *
 * ```ts
 * import { test } from 'node:test';
 * import assert from 'node:assert/strict';
 * import { testModule, days } from '@waymark/guest/testing';
 * import module from '../src/index.ts';
 *
 * test('a user who creates a project within three days is congratulated', async () => {
 *   const kit = testModule(module, { startAt: Date.parse('2026-01-05T09:00:00Z') });
 *   const run = await kit.run('ts-onboarding', {
 *     person: { key: 'u1', email: 'ada@example.com', properties: { name: 'Ada' } },
 *     events: [{ name: 'project.created', after: days(2), properties: { name: 'Apollo' } }],
 *   });
 *   assert.equal(run.status, 'completed', run.timeline());
 *   assert.deepEqual(run.emails.map((e) => e.template), ['onboarding-welcome', 'onboarding-first-project']);
 * });
 * ```
 */
export { TestKit, testModule, person } from './kit.js';
export { TestRun, type ResumeOptions } from './run.js';
export { TestKitError } from './world.js';
export { describeModule } from './describe.js';
export type { Step, StepKind, StepResponse } from './journal.js';
export type {
  ActivationReport,
  BucketJson,
  ContactUpdate,
  EmailStatus,
  EmittedEvent,
  EntryLimitJson,
  Instant,
  JourneyJson,
  KitOptions,
  LogLine,
  ManifestJson,
  MemberFixture,
  PastEmail,
  PastEvent,
  PersonFixture,
  PersonSnapshot,
  PriorRun,
  PropertiesInput,
  RandomValue,
  ReactOptions,
  RecordedEvent,
  RunOptions,
  RunStatus,
  SentEmail,
  SkipReason,
  StopOptions,
  SuppressedReason,
  TestEvent,
  TriggerOptions,
  WaitState,
  WakeCause,
} from './types.js';
export { type Duration, type Timestamp, millis, seconds, minutes, hours, days, weeks } from '../duration.js';
