/**
 * The test kit's data: what a test gives it (fixtures, scripted events, options) and what it
 * reports (runs' steps, emails, effects, activations).
 */
import type { CriteriaJson, Json } from '../criteria.js';
import type { Properties } from '../ctx.js';
import type { Duration, Timestamp } from '../duration.js';
import type { LogLevel } from '../host.js';
import type { LeaveReason } from '../module.js';
import type { Step } from './journal.js';

/** An instant: milliseconds since the Unix epoch, or a `Date`. */
export type Instant = Timestamp | Date;

/** A JSON object of properties, as a test writes it. */
export type PropertiesInput = { readonly [key: string]: unknown };

/**
 * Where a run is in its life, as the host names it, plus `skipped` for a run the enrollment
 * guards did not start (see {@link SkipReason}).
 */
export type RunStatus = 'active' | 'waiting' | 'completed' | 'failed' | 'exited' | 'skipped';

/** Why an event that matched a journey's trigger started no run, as the host counts the skip. */
export type SkipReason =
  | 'journey_disabled'
  | 'trigger_conditions_not_met'
  | 'already_entered_once'
  | 'period_not_elapsed'
  | 'user_unsubscribed'
  | 'already_active';

/**
 * A person as the kit knows them: their contact, with their history. Declaring a person whose
 * key the kit knows replaces their contact and the history an earlier declaration gave.
 */
export interface PersonFixture {
  /** The contact's resolved key. */
  key: string;
  /** Their address; stored trimmed and lower-cased, as the host stores it. */
  email?: string | null;
  /** Contact properties (a JSON object). */
  properties?: PropertiesInput;
  /** False: they unsubscribed (by key and address); true: they did not. Left out: as the kit knows them. */
  subscribed?: boolean;
  /** Events they fired before, for `ctx.countEvents` (never awaited, never an exit). */
  events?: readonly PastEvent[];
  /** Runs they had before, for `ctx.journeyHistory` and the entry limits. */
  runs?: readonly PriorRun[];
}

/** An event in a person's history: when it happened, `at` an instant or `ago` before now. */
export interface PastEvent {
  name: string;
  properties?: PropertiesInput;
  at?: Instant;
  ago?: Duration;
}

/** A run a person had before the test. */
export interface PriorRun {
  journey: string;
  /** Default `completed`; `active` or `waiting` make it live (a new run is `already_active`). */
  status?: 'active' | 'waiting' | 'completed' | 'failed' | 'exited';
  startedAt: Instant;
  /** When it ended; default `startedAt`. */
  endedAt?: Instant;
}

/** A current member of a bucket (a plain string is a member with just that key). */
export interface MemberFixture {
  key: string;
  email?: string | null;
  /** Default: the kit's start. */
  enteredAt?: Instant;
  /** The membership's epoch; default 1. */
  entryCount?: number;
}

/** An email's status, as the host stores it. */
export type EmailStatus = 'queued' | 'sent' | 'failed' | 'cancelled' | 'suppressed';

/** An email sent before the test, for `ctx.emailHistory` and journeys' `suppress` windows. */
export interface PastEmail {
  template: string;
  to: string;
  at: Instant;
  /** The journey that sent it (what a `suppress` window looks at). */
  journey?: string;
  /** Default `sent`. */
  status?: EmailStatus;
}

/**
 * An event a test sends: the person fires `name` at a virtual instant — `after` this long
 * (from the run's start for a run's `events`, from now for `send`), or `at` an instant. It is
 * stored like any event, ends the person's waits it satisfies, ends their runs whose `exitOn`
 * it matches, and counts in `ctx.countEvents`. It starts no run: the kit starts only the runs
 * a test asks for.
 */
export interface TestEvent {
  name: string;
  properties?: PropertiesInput;
  /** Default 0: right after the run's trigger (or now). */
  after?: Duration;
  at?: Instant;
  /** When it occurred, if not when it was received (backdated). */
  occurredAt?: Instant;
  /** Whose event; default the run's person (required for {@link TestKit.send}). */
  person?: string;
}

/** The event that starts a run. */
export interface TriggerOptions {
  /** Default: the journey's trigger; another name is refused. */
  name?: string;
  properties?: PropertiesInput;
  /** Default: when the run starts. */
  occurredAt?: Instant;
}

/** A scripted `ctx.random()` answer: a `number` in [0, 1) is what `ctx.random()` returns (the nearest multiple of 2⁻⁵³), a `bigint` the raw u64 the host answers (what `randomInt(n)` takes modulo n). */
export type RandomValue = number | bigint;

/** Where to stop driving a run that has not ended, to inspect it. */
export interface StopOptions {
  /** Stop once the virtual clock would pass this instant (what is due at it still happens). */
  until?: Instant;
  /** Stop after this many more activations of the run. */
  activations?: number;
}

/** How to start (and drive) a run. */
export interface RunOptions extends StopOptions {
  /** Who: a person (declared or replaced) or the key of one the kit knows. */
  person: PersonFixture | string;
  trigger?: TriggerOptions;
  /** Events the person (or another) fires, from the run's start. */
  events?: readonly TestEvent[];
  /** This run's `ctx.random()` answers, used before the kit's. */
  random?: readonly RandomValue[];
  /** When the run starts (the kit's clock moves there first); default now. */
  at?: Instant;
}

/** How to run a bucket reaction: a run's options with the transition's details instead of a trigger. */
export interface ReactOptions extends Omit<RunOptions, 'trigger'> {
  /** The membership's epoch; default 1 (so `isFirstEntry` is true). */
  entryCount?: number;
  /** A leave's reason; default `criteria`. */
  reason?: LeaveReason;
  /** Which dwell reaction, when the bucket has several. */
  dwell?: { after: Duration } | { every: Duration };
  /** A dwell's `dwellCount`; default 1. */
  dwellCount?: number;
  /** How the transition came about (the event's `source`); default `event`. */
  source?: 'event' | 'manual' | 'backfill' | 'reconcile';
}

/** Options of {@link testModule}: the world the module's runs see. */
export interface KitOptions {
  /** Where the virtual clock starts; default 2026-01-01T00:00:00Z. */
  startAt?: Instant;
  /** People the kit knows from the start. */
  people?: readonly PersonFixture[];
  /**
   * Bucket members by bucket id, in paging order. The module's own buckets are known (empty
   * unless given here); ids given here are buckets other modules of the tenant declare. Any
   * other bucket is unknown, as on the host.
   */
  buckets?: { readonly [bucketId: string]: readonly (string | MemberFixture)[] };
  /** Templates the tenant manages through the API: they win over the module's of the same key. */
  tenantTemplates?: readonly { key: string; subject: string; body: string; html?: string }[];
  /** Emails sent before the test. */
  emails?: readonly PastEmail[];
  /** Person keys and addresses that unsubscribed. */
  unsubscribed?: readonly string[];
  /** `ctx.random()` answers, in order, after each run's own; then a deterministic sequence. */
  random?: readonly RandomValue[];
  /** Seeds that sequence; default 1. */
  seed?: number;
  /** Most journal steps a run may record; default the host's 10,000 (`--max-run-steps`). */
  maxRunSteps?: number;
  /** Most activations of one run before the kit gives up (a journey that never ends); default 1,000. */
  maxActivations?: number;
  /**
   * While a handler runs, answer `Math.random()` from a sequence that changes with every
   * activation and `Date.now()` with the virtual clock, and count the calls (reported in
   * {@link TestRun.warnings}): a handler whose path depends on them replays differently and
   * fails as non-deterministic, as it would on the host. Default true.
   */
  guardGlobals?: boolean;
  /**
   * While a handler runs, `console.log` / `info` / `debug` / `warn` / `error` / `trace` write
   * the run's log lines ({@link TestRun.logs}), as a built module routes them to the host's
   * log: silent while replaying. False: they print as usual. Default true.
   */
  captureConsole?: boolean;
}

/** The person a run is for, as they were when it started. */
export interface PersonSnapshot {
  readonly key: string;
  readonly email: string | null;
  readonly properties: Properties;
}

/** An event as the kit stored it. */
export interface RecordedEvent {
  readonly id: string;
  readonly personKey: string;
  readonly name: string;
  readonly occurredAt: Timestamp;
  readonly receivedAt: Timestamp;
  readonly properties: Properties;
  /** Where it came from: a fixture's history, a run's trigger, the test, or a handler's `emit`. */
  readonly source: 'history' | 'trigger' | 'test' | 'emit';
}

/** Why an email was recorded but not sent. */
export type SuppressedReason = 'unsubscribed' | 'journey_suppress_window';

/** An email a run queued (or recorded as suppressed), as the host records it. */
export interface SentEmail {
  /** Stable within a kit: `email-1`, `email-2`, … */
  readonly id: string;
  readonly runId: string;
  readonly journeyId: string;
  /** The journal step that sent it. */
  readonly step: number;
  readonly at: Timestamp;
  readonly template: string;
  /** The recipient, normalised. */
  readonly to: string;
  /** The send's vars. */
  readonly vars: Properties;
  /** `queued` for delivery, or `suppressed` (recorded, never sent). */
  readonly status: 'queued' | 'suppressed';
  readonly suppressedReason: SuppressedReason | null;
  /**
   * A preview of the rendered email: `{{ name }}` and `{{ a.b }}` substitutions are filled
   * from the person's properties, `email`, `key`, `unsubscribe_url` and the vars; any other
   * template syntax is left as written (the host renders with minijinja).
   */
  readonly subject: string;
  readonly body: string;
  readonly html: string | null;
}

/** An event a handler emitted (`ctx.emit`, `ctx.emitFor`); the kit stores it after the activation commits. */
export interface EmittedEvent {
  readonly step: number;
  readonly at: Timestamp;
  readonly name: string;
  readonly personKey: string;
  readonly properties: Properties;
}

/** A contact patch a handler made (`ctx.updateContact`); applied after the activation commits, seen by later runs. */
export interface ContactUpdate {
  readonly step: number;
  readonly at: Timestamp;
  readonly personKey: string;
  readonly properties: Properties;
}

/** A log line a handler wrote while not replaying. */
export interface LogLine {
  readonly activation: number;
  readonly at: Timestamp;
  readonly level: LogLevel;
  readonly message: string;
}

/** What a waiting run waits for. */
export interface WaitState {
  /** The awaited event's name. */
  readonly event: string;
  readonly where: CriteriaJson | null;
  /** Events received from this instant on count. */
  readonly since: Timestamp;
  /** When the wait times out. */
  readonly deadline: Timestamp;
  readonly label: string;
}

/** Why an activation ran. */
export type WakeCause = 'start' | 'timer' | 'event' | 'timeout';

/** One activation of a run: the handler called from the top against the journal. */
export interface ActivationReport {
  /** 1 for the first. */
  readonly index: number;
  readonly at: Timestamp;
  /** `start`, a sleep's `timer`, an `event` named as awaited (`event` says which), a wait's `timeout`. */
  readonly wokenBy: WakeCause;
  readonly event: string | null;
  /** Steps answered from the journal (performed by earlier activations). */
  readonly replayed: readonly Step[];
  /** Steps performed at the frontier and recorded. */
  readonly performed: readonly Step[];
  /** False for a failed activation: the host keeps none of its steps, emails or effects. */
  readonly committed: boolean;
  readonly outcome: 'suspended' | 'completed' | 'failed';
  /** A suspended activation's next wake (a sleep's end, a wait's deadline). */
  readonly wakeAt: Timestamp | null;
  readonly error: string | null;
  /** What it sent, emitted and patched (kept only if `committed`). */
  readonly emails: readonly SentEmail[];
  readonly emitted: readonly EmittedEvent[];
  readonly contactUpdates: readonly ContactUpdate[];
  readonly logs: readonly LogLine[];
}

/** The module's manifest as plain JSON (what `describe` tells the host), for checking declarations. */
export interface ManifestJson {
  journeys: JourneyJson[];
  templates: { key: string; subject: string; body: string; html: string | null }[];
  buckets: BucketJson[];
}

export type EntryLimitJson = 'once' | 'unlimited' | { oncePer: Duration };

export interface JourneyJson {
  id: string;
  name: string;
  trigger: string;
  triggerWhere: Json | null;
  exitOn: { event: string; where: Json | null }[];
  entryLimit: EntryLimitJson;
  enabled: boolean;
  suppressMs: Duration;
}

export interface BucketJson {
  id: string;
  name: string;
  description: string | null;
  enabled: boolean;
  kind: 'computed' | 'manual';
  criteria: Json | null;
  timeBased: boolean | null;
  fastExpiry: boolean;
  minDwellMs: Duration | null;
  maxDwellMs: Duration | null;
  entryLimit: EntryLimitJson;
  reactions: {
    journeyId: string;
    handler: string;
    on:
      | { enter: { firstEntryOnly: boolean } }
      | { leave: { reasons: string[] | null } }
      | { dwell: { afterMs: Duration | null; everyMs: Duration | null } };
  }[];
}
