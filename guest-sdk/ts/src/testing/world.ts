/**
 * The kit's world: one virtual clock, the people, their events, the buckets, the emails, and
 * every run — driven the way the host drives them. An event is stored when the clock reaches
 * it, ending the live runs whose `exitOn` it matches and waking the runs waiting for it; a
 * run is activated when it starts, when its sleep is over, when an awaited event arrives, and
 * when its wait times out; each activation calls the handler from the top against the run's
 * journal and commits (or, when it fails, discards) what it did.
 *
 * @internal
 */
import { consoleLine, failureMessage, runHandler } from '../component.js';
import type { CriteriaJson, Json } from '../criteria.js';
import { Ctx, type Handler, type Properties } from '../ctx.js';
import type { Duration, Timestamp } from '../duration.js';
import type { LogLevel, RawInvocation } from '../host.js';
import { type BucketDef, type EntryLimit, type Module, ModuleError, type ReactionOn } from '../module.js';
import { CriteriaError, holds, leaves, parseConditionText, validateShape } from './conditions.js';
import { Activation, type Effect, KitHost } from './host.js';
import type { Step } from './journal.js';
import { deepFreeze, formatInstant, normalizeEmail, quoted } from './text.js';
import type {
  ActivationReport,
  ContactUpdate,
  EmailStatus,
  EmittedEvent,
  Instant,
  KitOptions,
  LogLine,
  MemberFixture,
  PastEmail,
  PersonFixture,
  PersonSnapshot,
  PropertiesInput,
  RandomValue,
  RecordedEvent,
  RunStatus,
  SentEmail,
  SkipReason,
  TestEvent,
  WaitState,
  WakeCause,
} from './types.js';

/** A test that uses the kit wrongly (an unknown journey, time going backwards, a runaway run). */
export class TestKitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TestKitError';
  }
}

/** The kit's default start: 2026-01-01T00:00:00Z. */
export const DEFAULT_START = Date.UTC(2026, 0, 1);
const DEFAULT_MAX_RUN_STEPS = 10_000;
const DEFAULT_MAX_ACTIVATIONS = 1_000;
const U64 = (1n << 64n) - 1n;

/** A journey (or bucket reaction) as the host would route and run it. */
export interface JourneySpec {
  id: string;
  name: string;
  trigger: string;
  triggerWhere: CriteriaJson | undefined;
  exitOn: { event: string; where: CriteriaJson | undefined }[];
  entryLimit: EntryLimit;
  enabled: boolean;
  suppress: Duration;
  handler: Handler;
  /** For a reaction: its bucket and transition. */
  reaction: { bucket: BucketDef; on: ReactionOn } | undefined;
}

interface PersonRecord {
  key: string;
  email: string | null;
  properties: { [key: string]: Json };
}

export interface MemberRecord {
  /** The keyset id pages are ordered by (opaque to the guest, like the host's). */
  id: string;
  key: string;
  email: string | null;
  enteredAt: Timestamp;
  entryCount: number;
}

interface PriorRunRecord {
  personKey: string;
  journey: string;
  status: RunStatus;
  startedAt: Timestamp;
  endedAt: Timestamp;
}

interface PastEmailRecord {
  template: string;
  to: string;
  at: Timestamp;
  journey: string | null;
  status: EmailStatus;
}

interface Pending {
  order: number;
  event: RecordedEvent;
}

/** Converts an {@link Instant} to ms, naming `what` when it is not one. */
export function instant(value: Instant, what: string): Timestamp {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms)) {
    throw new TestKitError(`${what} must be a Date or whole milliseconds since the Unix epoch, got ${String(value)}`);
  }
  return ms;
}

function duration(value: unknown, what: string): Duration {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TestKitError(`${what} must be a whole, non-negative number of milliseconds, got ${String(value)}`);
  }
  return value;
}

function propertiesOf(value: PropertiesInput | undefined, what: string): { [key: string]: Json } {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TestKitError(`${what} must be an object of properties`);
  }
  return JSON.parse(JSON.stringify(value)) as { [key: string]: Json };
}

/** One run's state, driven by the world; {@link TestRun} is its public face. */
export class RunState {
  status: RunStatus;
  skipReason: SkipReason | null = null;
  error: string | null = null;
  endedAt: Timestamp | null = null;
  exitedBy: RecordedEvent | null = null;
  readonly journal: Step[] = [];
  readonly activations: ActivationReport[] = [];
  readonly emails: SentEmail[] = [];
  readonly emitted: EmittedEvent[] = [];
  readonly contactUpdates: ContactUpdate[] = [];
  readonly logs: LogLine[] = [];
  readonly globals = { mathRandom: 0, dateNow: 0 };
  /** When the run is next due (Infinity: not due). */
  dueAt: number;
  wakeCause: WakeCause = 'start';
  wakeEvent: string | null = null;
  /** The pending wake of a suspended run. */
  wakeAt: Timestamp | null = null;
  wait: WaitState | null = null;

  constructor(
    readonly id: string,
    readonly spec: JourneySpec,
    readonly person: PersonSnapshot,
    readonly trigger: { name: string; occurredAt: Timestamp; properties: Properties },
    readonly startedAt: Timestamp,
    readonly random: RandomValue[],
    skip: SkipReason | null,
  ) {
    this.status = skip === null ? 'active' : 'skipped';
    this.skipReason = skip;
    this.dueAt = skip === null ? startedAt : Infinity;
  }

  get live(): boolean {
    return this.status === 'active' || this.status === 'waiting';
  }

  get invocation(): RawInvocation {
    return {
      handler: this.spec.id,
      runId: this.id,
      person: { key: this.person.key, email: this.person.email ?? undefined, propertiesJson: JSON.stringify(this.person.properties) },
      trigger: {
        name: this.trigger.name,
        occurredAt: this.trigger.occurredAt,
        propertiesJson: JSON.stringify(this.trigger.properties),
      },
    };
  }
}

/** What a drive stops at, besides the run ending. */
export interface Stop {
  until?: Timestamp;
  activations?: number;
}

export class World {
  clock: Timestamp;
  readonly specs = new Map<string, JourneySpec>();
  readonly people = new Map<string, PersonRecord>();
  readonly unsubscribed = new Set<string>();
  readonly events: RecordedEvent[] = [];
  private pending: Pending[] = [];
  readonly emails: SentEmail[] = [];
  private readonly pastEmails: PastEmailRecord[] = [];
  private readonly priorRuns: PriorRunRecord[] = [];
  readonly runs: RunState[] = [];
  private readonly buckets = new Map<string, MemberRecord[]>();
  private readonly tenantTemplates = new Map<string, { subject: string; body: string; html?: string }>();
  private readonly moduleTemplates = new Map<string, { subject: string; body: string; html?: string }>();
  private readonly randomQueue: RandomValue[];
  private rng: bigint;
  private counters = { run: 0, email: 0, event: 0, member: 0, order: 0 };
  private driving = false;
  readonly maxRunSteps: number;
  readonly maxActivations: number;
  readonly guardGlobals: boolean;
  readonly captureConsole: boolean;

  constructor(
    readonly module: Module,
    options: KitOptions,
  ) {
    this.clock = options.startAt === undefined ? DEFAULT_START : instant(options.startAt, 'startAt');
    this.maxRunSteps = options.maxRunSteps ?? DEFAULT_MAX_RUN_STEPS;
    this.maxActivations = options.maxActivations ?? DEFAULT_MAX_ACTIVATIONS;
    this.guardGlobals = options.guardGlobals ?? true;
    this.captureConsole = options.captureConsole ?? true;
    this.randomQueue = [...(options.random ?? [])];
    this.rng = BigInt.asUintN(64, BigInt(options.seed ?? 1));
    this.buildSpecs();
    for (const t of module.manifest.templates) this.moduleTemplates.set(t.key, t);
    for (const t of options.tenantTemplates ?? []) this.tenantTemplates.set(t.key, t);
    for (const b of module.manifest.buckets) this.buckets.set(b.id, []);
    for (const [id, members] of Object.entries(options.buckets ?? {})) this.setBucket(id, members);
    for (const who of options.unsubscribed ?? []) this.unsubscribe(who);
    for (const p of options.people ?? []) this.addPerson(p);
    for (const e of options.emails ?? []) this.addPastEmail(e);
  }

  // ---- the module ----

  /** Every handler id as the host would route it, checking what the host checks on load. */
  private buildSpecs(): void {
    const problems: string[] = [];
    const manifest = this.module.manifest;
    const condition = (text: string | undefined, at: string, field: string): CriteriaJson | undefined => {
      if (text === undefined) return undefined;
      try {
        const parsed = parseConditionText(text);
        validateShape(parsed);
        for (const leaf of leaves(parsed)) {
          if (leaf.type === 'event') {
            problems.push(
              `${at}: ${field} may hold only property conditions (on the event's properties); event condition ${quoted(leaf.event)} is not allowed`,
            );
          }
        }
        return parsed;
      } catch (e) {
        if (!(e instanceof CriteriaError)) throw e;
        problems.push(`${at}: ${field}${e.path.slice('criteria'.length)} ${e.reason}`);
        return undefined;
      }
    };
    const reactionIds = new Set(manifest.buckets.flatMap((b) => b.reactions.map((r) => r.journeyId)));
    const declared = new Map<string, JourneySpec>();
    manifest.journeys.forEach((j, i) => {
      const at = `journeys[${i}] ${quoted(j.id)}`;
      const handler = this.module.handler(j.id);
      const spec: JourneySpec = {
        id: j.id,
        name: j.name,
        trigger: j.trigger,
        triggerWhere: condition(j.triggerWhere, at, 'trigger-where'),
        exitOn: j.exitOn.map((r, k) => ({ event: r.event, where: condition(r.where, at, `exit-on[${k}].where`) })),
        entryLimit: j.entryLimit,
        enabled: j.enabled,
        suppress: j.suppress,
        handler: handler ?? (() => undefined),
        reaction: undefined,
      };
      declared.set(j.id, spec);
      if (!reactionIds.has(j.id)) this.specs.set(j.id, spec);
    });
    manifest.buckets.forEach((b, i) => {
      if (b.criteria !== undefined) {
        try {
          validateShape(parseConditionText(b.criteria));
        } catch (e) {
          if (!(e instanceof CriteriaError)) throw e;
          problems.push(`buckets[${i}] ${quoted(b.id)}: ${e.message}`);
        }
      }
      for (const r of b.reactions) {
        const kind = 'enter' in r.on ? 'enter' : 'leave' in r.on ? 'leave' : 'dwell';
        const own = declared.get(r.journeyId);
        this.specs.set(r.journeyId, {
          id: r.journeyId,
          name: own?.name ?? `${b.name} \u2014 on ${kind}`,
          trigger: reactionTrigger(b.id, r.on),
          triggerWhere: reactionFilter(r.on),
          exitOn: own?.exitOn ?? [],
          entryLimit: 'unlimited',
          enabled: b.enabled && (own?.enabled ?? true),
          suppress: own?.suppress ?? 0,
          handler: this.module.handler(r.handler) ?? (() => undefined),
          reaction: { bucket: b, on: r.on },
        });
      }
    });
    if (problems.length > 0) throw new ModuleError(problems);
  }

  spec(journeyId: string): JourneySpec {
    const spec = this.specs.get(journeyId);
    if (spec === undefined) throw new TestKitError(this.module.unknownHandler(journeyId));
    return spec;
  }

  template(key: string): { subject: string; body: string; html?: string } | undefined {
    return this.tenantTemplates.get(key) ?? this.moduleTemplates.get(key);
  }

  // ---- fixtures ----

  addPerson(fixture: PersonFixture): PersonRecord {
    if (fixture === null || typeof fixture !== 'object' || typeof fixture.key !== 'string' || fixture.key.trim() === '') {
      throw new TestKitError('a person needs a key (a non-empty string)');
    }
    const email = fixture.email === undefined || fixture.email === null ? null : normalizeEmail(fixture.email);
    const record: PersonRecord = {
      key: fixture.key,
      email,
      properties: propertiesOf(fixture.properties, `person ${quoted(fixture.key)}'s properties`),
    };
    // Declaring a person again replaces them: their contact, and the history the fixture gave.
    this.people.set(record.key, record);
    this.events.splice(
      0,
      this.events.length,
      ...this.events.filter((e) => !(e.personKey === record.key && e.source === 'history')),
    );
    this.priorRuns.splice(0, this.priorRuns.length, ...this.priorRuns.filter((r) => r.personKey !== record.key));
    if (fixture.subscribed === false) {
      this.unsubscribe(record.key);
      if (email !== null) this.unsubscribe(email);
    } else if (fixture.subscribed === true) {
      this.unsubscribed.delete(record.key);
      if (email !== null) this.unsubscribed.delete(email);
    }
    for (const e of fixture.events ?? []) {
      if ((e.at === undefined) === (e.ago === undefined)) {
        throw new TestKitError(`person ${quoted(record.key)}'s past event ${quoted(e.name)}: give exactly one of at or ago`);
      }
      const at = e.at !== undefined ? instant(e.at, `past event ${quoted(e.name)}'s at`) : this.clock - duration(e.ago, 'ago');
      if (at > this.clock) {
        throw new TestKitError(
          `person ${quoted(record.key)}'s past event ${quoted(e.name)} is in the future (${formatInstant(at)}); send events to come with a run's events or kit.send`,
        );
      }
      this.store(this.eventRecord(record.key, e.name, e.properties, at, at, 'history'));
    }
    for (const r of fixture.runs ?? []) {
      const startedAt = instant(r.startedAt, `prior run of ${quoted(r.journey)}: startedAt`);
      this.priorRuns.push({
        personKey: record.key,
        journey: r.journey,
        status: r.status ?? 'completed',
        startedAt,
        endedAt: r.endedAt === undefined ? startedAt : instant(r.endedAt, `prior run of ${quoted(r.journey)}: endedAt`),
      });
    }
    return record;
  }

  person(key: string): PersonRecord | undefined {
    return this.people.get(key);
  }

  unsubscribe(who: string): void {
    this.unsubscribed.add(who.includes('@') ? (normalizeEmail(who) ?? who) : who);
  }

  isUnsubscribed(key: string, email: string | null): boolean {
    return this.unsubscribed.has(key) || (email !== null && this.unsubscribed.has(email));
  }

  setBucket(id: string, members: readonly (string | MemberFixture)[]): void {
    this.buckets.set(
      id,
      members.map((m) => {
        const fixture: MemberFixture = typeof m === 'string' ? { key: m } : m;
        return this.memberRecord(fixture);
      }),
    );
  }

  private memberRecord(fixture: MemberFixture): MemberRecord {
    this.counters.member++;
    return {
      id: `m${String(this.counters.member).padStart(10, '0')}`,
      key: fixture.key,
      email: fixture.email === undefined || fixture.email === null ? null : normalizeEmail(fixture.email),
      enteredAt: fixture.enteredAt === undefined ? this.clock : instant(fixture.enteredAt, `member ${quoted(fixture.key)}'s enteredAt`),
      entryCount: fixture.entryCount ?? 1,
    };
  }

  /** The bucket's members in paging order, or undefined for a bucket the tenant does not have. */
  members(bucket: string): readonly MemberRecord[] | undefined {
    return this.buckets.get(bucket);
  }

  /** Records a person's entry into (or leaving of) a known bucket, as the host does before a reaction runs. */
  moveMember(bucket: string, key: string, entered: boolean, entryCount: number): void {
    const members = this.buckets.get(bucket);
    if (members === undefined) return;
    const at = members.findIndex((m) => m.key === key);
    if (entered && at < 0) {
      members.push(this.memberRecord({ key, email: this.people.get(key)?.email ?? null, entryCount }));
    } else if (!entered && at >= 0) {
      members.splice(at, 1);
    }
  }

  addPastEmail(email: PastEmail): void {
    this.pastEmails.push({
      template: email.template,
      to: normalizeEmail(email.to) ?? email.to,
      at: instant(email.at, `past email ${quoted(email.template)}'s at`),
      journey: email.journey ?? null,
      status: email.status ?? 'sent',
    });
  }

  // ---- reads the imports answer from ----

  nextRandom(run: RunState): bigint {
    const scripted = run.random.shift() ?? this.randomQueue.shift();
    if (scripted !== undefined) return randomValue(scripted);
    // splitmix64: a fixed, seeded sequence.
    this.rng = (this.rng + 0x9e3779b97f4a7c15n) & U64;
    let z = this.rng;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & U64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & U64;
    return z ^ (z >> 31n);
  }

  nextEmailId(): string {
    return `email-${++this.counters.email}`;
  }

  /** The earliest stored event of `personKey` named `name` received in [from, until] whose properties satisfy `filter`. */
  firstMatch(personKey: string, name: string, from: Timestamp, until: Timestamp, filter: CriteriaJson | null): RecordedEvent | undefined {
    return this.events.find(
      (e) =>
        e.personKey === personKey &&
        e.name === name &&
        e.source !== 'history' &&
        e.receivedAt >= from &&
        e.receivedAt <= until &&
        (filter === null || holds(filter, e.properties)),
    );
  }

  eventCount(personKey: string, name: string, since: Timestamp | undefined): number {
    return this.events.filter(
      (e) => e.personKey === personKey && e.name === name && (since === undefined || e.occurredAt >= since),
    ).length;
  }

  journeyHistory(personKey: string, journey: string): { entries: number; completed: number; lastCompletedAt: number | null } {
    const runs = [
      ...this.priorRuns.filter((r) => r.personKey === personKey && r.journey === journey),
      ...this.runs
        .filter((r) => r.person.key === personKey && r.spec.id === journey && r.status !== 'skipped')
        .map((r) => ({ status: r.status, endedAt: r.endedAt ?? r.startedAt })),
    ];
    const completed = runs.filter((r) => r.status === 'completed');
    return {
      entries: runs.length,
      completed: completed.length,
      lastCompletedAt: completed.length === 0 ? null : Math.max(...completed.map((r) => r.endedAt)),
    };
  }

  emailHistory(to: string, template: string): { count: number; lastSentAt: number | null } {
    const past = this.pastEmails.filter((e) => e.to === to && e.template === template);
    const sent = this.emails.filter((e) => e.to === to && e.template === template);
    // A queued email counts as delivered when it was queued: the kit has no delivery worker.
    const deliveries = [...past.filter((e) => e.status === 'sent').map((e) => e.at), ...sent.filter((e) => e.status === 'queued').map((e) => e.at)];
    return { count: past.length + sent.length, lastSentAt: deliveries.length === 0 ? null : Math.max(...deliveries) };
  }

  /** Whether `journey` queued or sent an email to `to` at or after `since`. */
  journeyEmailedSince(journey: string, to: string, since: Timestamp): boolean {
    return (
      this.emails.some((e) => e.journeyId === journey && e.to === to && e.status === 'queued' && e.at >= since) ||
      this.pastEmails.some(
        (e) => e.journey === journey && e.to === to && (e.status === 'queued' || e.status === 'sent') && e.at >= since,
      )
    );
  }

  // ---- events ----

  eventRecord(
    personKey: string,
    name: string,
    properties: PropertiesInput | undefined,
    receivedAt: Timestamp,
    occurredAt: Timestamp,
    source: RecordedEvent['source'],
  ): RecordedEvent {
    return deepFreeze({
      id: `event-${++this.counters.event}`,
      personKey,
      name,
      occurredAt,
      receivedAt,
      properties: propertiesOf(properties, `event ${quoted(name)}'s properties`),
      source,
    });
  }

  /** Schedules a test's event: `after` from `base`, or `at`. */
  schedule(event: TestEvent, base: Timestamp, defaultPerson: string | undefined): RecordedEvent {
    if (typeof event?.name !== 'string' || event.name.trim() === '') throw new TestKitError('an event needs a name');
    if (event.after !== undefined && event.at !== undefined) {
      throw new TestKitError(`event ${quoted(event.name)}: give after or at, not both`);
    }
    const at = event.at !== undefined ? instant(event.at, `event ${quoted(event.name)}'s at`) : base + duration(event.after ?? 0, `event ${quoted(event.name)}'s after`);
    if (at < this.clock) {
      throw new TestKitError(
        `event ${quoted(event.name)} at ${formatInstant(at)} is before the kit's clock (${formatInstant(this.clock)}): the kit's time only moves forward; give past events in a person's events`,
      );
    }
    const personKey = event.person ?? defaultPerson;
    if (personKey === undefined) throw new TestKitError(`event ${quoted(event.name)}: say whose it is (person)`);
    if (!this.people.has(personKey)) this.people.set(personKey, { key: personKey, email: null, properties: {} });
    const occurredAt = event.occurredAt === undefined ? at : instant(event.occurredAt, `event ${quoted(event.name)}'s occurredAt`);
    const record = this.eventRecord(personKey, event.name, event.properties, at, occurredAt, 'test');
    this.pending.push({ order: ++this.counters.order, event: record });
    this.pending.sort((a, b) => a.event.receivedAt - b.event.receivedAt || a.order - b.order);
    return record;
  }

  /** Stores an event in receive order (a fixture's past event may come in after later ones). */
  private store(event: RecordedEvent): void {
    let at = this.events.length;
    while (at > 0 && this.events[at - 1]!.receivedAt > event.receivedAt) at--;
    this.events.splice(at, 0, event);
  }

  /**
   * Ingests an event now: stores it, ends the person's live runs whose `exitOn` it matches (in
   * the same transaction, as the host does) and wakes their runs waiting for its name.
   */
  ingest(event: RecordedEvent): void {
    this.store(event);
    for (const run of this.runs) {
      if (!run.live || run.person.key !== event.personKey) continue;
      const exits = run.spec.exitOn.some(
        (rule) => rule.event === event.name && (rule.where === undefined || holds(rule.where, event.properties)),
      );
      if (exits) {
        run.status = 'exited';
        run.endedAt = event.receivedAt;
        run.exitedBy = event;
        run.dueAt = Infinity;
        run.wakeAt = null;
        run.wait = null;
      } else if (run.status === 'waiting' && run.wait !== null && run.wait.event === event.name && event.receivedAt >= run.wait.since) {
        if (event.receivedAt < run.dueAt) {
          run.dueAt = event.receivedAt;
          run.wakeCause = 'event';
          run.wakeEvent = event.name;
        }
      }
    }
  }

  // ---- runs ----

  /** Starts a run now (the enrollment guards may skip it). */
  startRun(
    spec: JourneySpec,
    person: PersonRecord,
    trigger: { name: string; properties: PropertiesInput | undefined; occurredAt: Timestamp | undefined },
    random: readonly RandomValue[],
  ): RunState {
    const now = this.clock;
    const event = this.eventRecord(person.key, trigger.name, trigger.properties, now, trigger.occurredAt ?? now, 'trigger');
    // Stored first: it may end the person's other live runs (a run it starts is not one of them).
    this.ingest(event);
    const snapshot: PersonSnapshot = deepFreeze({
      key: person.key,
      email: person.email,
      properties: JSON.parse(JSON.stringify(person.properties)) as Properties,
    });
    const skip = this.admit(spec, person, event.properties, now);
    const run = new RunState(
      `run-${++this.counters.run}`,
      spec,
      snapshot,
      { name: event.name, occurredAt: event.occurredAt, properties: event.properties },
      now,
      [...random],
      skip,
    );
    this.runs.push(run);
    return run;
  }

  /** The host's enrollment guards, in its order; the first that fails names the skip. */
  private admit(spec: JourneySpec, person: PersonRecord, properties: Properties, now: Timestamp): SkipReason | null {
    if (!spec.enabled) return 'journey_disabled';
    if (spec.triggerWhere !== undefined && !holds(spec.triggerWhere, properties)) return 'trigger_conditions_not_met';
    const prior = [
      ...this.priorRuns.filter((r) => r.personKey === person.key && r.journey === spec.id),
      ...this.runs.filter((r) => r.person.key === person.key && r.spec.id === spec.id && r.status !== 'skipped'),
    ];
    const limit = spec.entryLimit;
    if (limit === 'once' && prior.length > 0) return 'already_entered_once';
    if (typeof limit === 'object') {
      const latest = Math.max(...prior.map((r) => r.startedAt));
      if (prior.length > 0 && latest + limit.oncePer > now) return 'period_not_elapsed';
    }
    if (this.isUnsubscribed(person.key, person.email)) return 'user_unsubscribed';
    if (prior.some((r) => r.status === 'active' || r.status === 'waiting')) return 'already_active';
    return null;
  }

  /**
   * Moves the clock and activates runs until `target` ends (or, without one, until `stop.until`),
   * or a stop is reached. At each instant, events are stored before runs due then are activated.
   */
  async drive(target: RunState | undefined, stop: Stop): Promise<void> {
    if (this.driving) {
      throw new TestKitError('the kit is already driving its runs: await one run, resume or advance before the next');
    }
    this.driving = true;
    try {
      await this.driveLoop(target, stop);
    } finally {
      this.driving = false;
    }
  }

  private async driveLoop(target: RunState | undefined, stop: Stop): Promise<void> {
    const baseline = target?.activations.length ?? 0;
    for (;;) {
      if (target !== undefined && !target.live) return;
      if (target !== undefined && stop.activations !== undefined && target.activations.length - baseline >= stop.activations) {
        return;
      }
      const nextEvent = this.pending[0]?.event.receivedAt ?? Infinity;
      const nextRun = Math.min(...this.runs.filter((r) => r.live).map((r) => r.dueAt));
      const next = Math.max(this.clock, Math.min(nextEvent, nextRun));
      if (stop.until !== undefined && next > stop.until) {
        this.clock = Math.max(this.clock, stop.until);
        return;
      }
      if (next === Infinity) {
        if (target !== undefined) throw new TestKitError(`run ${target.id} is live but nothing is due (a bug of the kit)`);
        return;
      }
      this.clock = next;
      while (this.pending[0] !== undefined && this.pending[0].event.receivedAt <= this.clock) {
        this.ingest(this.pending.shift()!.event);
      }
      const due = this.runs.find((r) => r.live && r.dueAt <= this.clock);
      if (due !== undefined) await this.activate(due);
    }
  }

  /** One activation: the handler from the top against the journal, then the commit. */
  private async activate(run: RunState): Promise<void> {
    const index = run.activations.length + 1;
    if (index > this.maxActivations) {
      throw new TestKitError(
        `run ${run.id} of ${quoted(run.spec.id)} reached the kit's cap of ${this.maxActivations} activations ` +
          `(a journey that never ends?); stop it earlier with { until } or { activations }, or raise maxActivations`,
      );
    }
    const at = this.clock;
    const wokenBy = run.wakeCause;
    const wakeEvent = run.wakeEvent;
    const act = new Activation(run, at, index, this.maxRunSteps);
    const host = new KitHost(this, run, act);
    const restoreGlobals = this.guardGlobals ? guardGlobals(act, index) : () => undefined;
    const restoreConsole = this.captureConsole ? captureConsole(host) : () => undefined;
    let thrown: string | undefined;
    try {
      let ctx: Ctx | undefined;
      try {
        ctx = new Ctx(host, run.invocation);
      } catch (e) {
        thrown = failureMessage(e);
      }
      if (ctx !== undefined) await runHandler(run.spec.handler, ctx);
    } catch (e) {
      thrown = typeof e === 'string' ? e : failureMessage(e);
    } finally {
      restoreConsole();
      restoreGlobals();
    }
    run.globals.mathRandom += act.globals.mathRandom;
    run.globals.dateNow += act.globals.dateNow;

    // The outcome, as the host classifies it: a refused step first, then a fault, a suspension,
    // the handler's own error, and a return (which must have walked the whole journal).
    const halt = act.halt;
    let error: string | null = null;
    let suspended: { wakeAt: Timestamp; wait: WaitState | null } | null = null;
    if (halt?.kind === 'refused') error = halt.message;
    else if (act.misuse !== null) error = misuseMessage(act.misuse);
    else if (halt?.kind === 'fault') error = halt.message;
    else if (halt?.kind === 'suspend') suspended = { wakeAt: halt.wakeAt, wait: halt.wait };
    else if (thrown !== undefined) error = `the journey returned an error: ${thrown}`;
    else error = act.replay.checkFullyReplayed()?.message ?? null;

    const replayed = run.journal.slice(0, act.replay.replayed);
    const performed = [...act.replay.fresh];
    const committed = error === null;
    const emitted: EmittedEvent[] = [];
    const contactUpdates: ContactUpdate[] = [];
    for (const effect of act.effects) {
      if (effect.kind === 'trigger') {
        emitted.push(deepFreeze({ step: effect.step, at, name: effect.name, personKey: effect.personKey, properties: effect.properties }));
      } else {
        contactUpdates.push(deepFreeze({ step: effect.step, at, personKey: effect.personKey, properties: effect.properties }));
      }
    }
    run.activations.push(
      Object.freeze({
        index,
        at,
        wokenBy,
        event: wokenBy === 'event' ? wakeEvent : null,
        replayed,
        performed,
        committed,
        outcome: error !== null ? ('failed' as const) : suspended !== null ? ('suspended' as const) : ('completed' as const),
        wakeAt: suspended?.wakeAt ?? null,
        error,
        emails: [...act.emails],
        emitted,
        contactUpdates,
        logs: [...act.logs],
      }),
    );
    run.logs.push(...act.logs);

    if (error !== null) {
      // A failed activation commits only the failure: its steps, emails and effects never happened.
      run.status = 'failed';
      run.error = error;
      run.endedAt = at;
      run.dueAt = Infinity;
      run.wakeAt = null;
      run.wait = null;
      return;
    }
    run.journal.push(...performed);
    run.emails.push(...act.emails);
    this.emails.push(...act.emails);
    if (suspended !== null) {
      run.status = 'waiting';
      run.wakeAt = suspended.wakeAt;
      run.wait = suspended.wait;
      run.dueAt = suspended.wakeAt;
      run.wakeCause = suspended.wait === null ? 'timer' : 'timeout';
      run.wakeEvent = null;
    } else {
      run.status = 'completed';
      run.endedAt = at;
      run.dueAt = Infinity;
      run.wakeAt = null;
      run.wait = null;
    }
    run.emitted.push(...emitted);
    run.contactUpdates.push(...contactUpdates);
    this.applyEffects(act.effects, at);
  }

  /** After the commit, in step order: contact patches land on the person, emitted events are ingested. */
  private applyEffects(effects: readonly Effect[], at: Timestamp): void {
    for (const effect of effects) {
      if (effect.kind === 'update-contact') {
        const person = this.people.get(effect.personKey);
        if (person === undefined) continue;
        for (const [key, value] of Object.entries(effect.properties)) {
          if (value === null || value === undefined) delete person.properties[key];
          else person.properties[key] = JSON.parse(JSON.stringify(value)) as Json;
        }
      } else {
        if (!this.people.has(effect.personKey)) {
          this.people.set(effect.personKey, { key: effect.personKey, email: null, properties: {} });
        }
        this.ingest(this.eventRecord(effect.personKey, effect.name, effect.properties, at, at, 'emit'));
      }
    }
  }
}

function randomValue(value: RandomValue): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64) throw new TestKitError(`a scripted random value must be a u64, got ${value}n`);
    return value;
  }
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw new TestKitError(`a scripted random number must be in [0, 1) (or a bigint u64), got ${String(value)}`);
  }
  const scaled = Math.min(Math.round(value * 2 ** 53), 2 ** 53 - 1);
  return BigInt(scaled) << 11n;
}

function misuseMessage(misuse: { call: string; after: string }): string {
  return (
    `waymark test kit: the handler called ${misuse.call} after its activation was suspended at ${misuse.after}: ` +
    'it caught the suspension the kit throws and went on. On the host nothing runs after a suspension (the ' +
    'activation ends there, and the next one replays from the top), so catch only the errors you handle — ' +
    'for example `if (!(e instanceof HostError)) throw e`'
  );
}

/** The reaction's trigger event: `bucket:entered:<id>`, `bucket:left:<id>`, `bucket:dwell:<id>:<label>`. */
export function reactionTrigger(bucketId: string, on: ReactionOn): string {
  if ('enter' in on) return `bucket:entered:${bucketId}`;
  if ('leave' in on) return `bucket:left:${bucketId}`;
  return `bucket:dwell:${bucketId}:${dwellLabel(on.dwell)}`;
}

export function dwellLabel(dwell: { afterMs?: Duration; everyMs?: Duration }): string {
  return dwell.afterMs !== undefined ? `after-${dwell.afterMs}` : `every-${dwell.everyMs}`;
}

/** The filter the host desugars a reaction's options into. */
function reactionFilter(on: ReactionOn): CriteriaJson | undefined {
  if ('enter' in on && on.enter.firstEntryOnly) {
    return { type: 'property', property: 'isFirstEntry', operator: 'eq', value: true };
  }
  if ('leave' in on && on.leave.reasons !== undefined) {
    return { type: 'property', property: 'reason', operator: 'in', value: [...on.leave.reasons] };
  }
  return undefined;
}

/**
 * While a handler runs: `Math.random()` answers from a sequence that differs between
 * activations (near 0 on odd ones, near 1 on even ones, so a branch on it flips on replay) and
 * `Date.now()` with the virtual clock (which moves between activations), both counted.
 */
function guardGlobals(act: Activation, index: number): () => void {
  const realRandom = Math.random;
  const realNow = Date.now;
  const base = index % 2 === 1 ? 0 : 0.999;
  let calls = 0;
  Math.random = () => {
    act.globals.mathRandom++;
    calls++;
    return base + 0.001 * ((calls * 0.6180339887498949) % 1);
  };
  Date.now = () => {
    act.globals.dateNow++;
    return act.at;
  };
  return () => {
    Math.random = realRandom;
    Date.now = realNow;
  };
}

/**
 * While a handler runs, `console.*` writes the run's log lines through the activation's host,
 * formatted as a built module's console formats them for the host's log (`consoleLine`).
 */
function captureConsole(host: KitHost): () => void {
  const console = globalThis.console as unknown as { [method: string]: unknown };
  const saved: { [method: string]: unknown } = {};
  const levels: [string, LogLevel][] = [
    ['log', 'info'],
    ['info', 'info'],
    ['debug', 'debug'],
    ['warn', 'warn'],
    ['error', 'error'],
    ['trace', 'trace'],
  ];
  for (const [method, level] of levels) {
    saved[method] = console[method];
    console[method] = (...args: unknown[]) => host.log(level, consoleLine(args));
  }
  return () => {
    for (const [method] of levels) console[method] = saved[method];
  };
}
