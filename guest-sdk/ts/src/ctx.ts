/**
 * What a handler gets: the run's person and trigger, and every host call as a method. Every
 * call except logging is a durable, journaled step: when the run is activated again (after a
 * sleep, a wait, or a restart) the handler runs again from the top and each call already made
 * returns its recorded answer at once — no second email, the same `now()` and `random()`. So a
 * handler must be deterministic apart from what it learns through `ctx`.
 *
 * The calls are synchronous. Handlers may be `async` and `await` them (as in
 * `await ctx.sleep(days(2))`): awaiting a value that is not a promise is harmless.
 */
import type { Criteria, Json } from './criteria.js';
import { type Duration, type Timestamp, checkDuration, checkTimestamp } from './duration.js';
import type { Host, LogLevel, RawEvent, RawInvocation, RawMember } from './host.js';

/** A JSON object of properties. */
export type Properties = { readonly [key: string]: Json | undefined };

/** Typed reads of a properties object. */
class WithProperties {
  constructor(readonly properties: Properties) {}

  /** The property as a string, if it is one. */
  string(key: string): string | undefined {
    const v = this.properties[key];
    return typeof v === 'string' ? v : undefined;
  }
  /** The property as a number, if it is one. */
  number(key: string): number | undefined {
    const v = this.properties[key];
    return typeof v === 'number' ? v : undefined;
  }
  /** The property as a boolean, if it is one. */
  boolean(key: string): boolean | undefined {
    const v = this.properties[key];
    return typeof v === 'boolean' ? v : undefined;
  }
}

/** The person a run is for, as they were when the run started. */
export class Person extends WithProperties {
  constructor(
    /** The contact's resolved key. */
    readonly key: string,
    readonly email: string | null,
    properties: Properties,
  ) {
    super(properties);
  }
}

/** An event: the run's trigger, or one a wait received. */
export class Event extends WithProperties {
  constructor(
    readonly name: string,
    /** When it occurred, in ms since the Unix epoch. */
    readonly occurredAt: Timestamp,
    properties: Properties,
  ) {
    super(properties);
  }
}

/** A current member of a bucket. */
export interface Member {
  key: string;
  email: string | null;
  enteredAt: Timestamp;
  /** 1 for the person's first entry. */
  entryCount: number;
}

export interface MemberPage {
  members: Member[];
  /** Pass it as the next request's `cursor`; null on the last page. */
  nextCursor: string | null;
  /** Current members when the page was read. */
  total: number;
}

export interface JourneyHistory {
  /** Runs of any status, this one included. */
  entries: number;
  completed: number;
  lastCompletedAt: Timestamp | null;
}

export interface EmailHistory {
  /** Emails of any status. */
  count: number;
  /** The latest delivery, if one was delivered. */
  lastSentAt: Timestamp | null;
}

export interface EmailOptions {
  /** Recipient; the person's email when left out. */
  to?: string;
  /** Template variables, over the person's properties. */
  vars?: { [key: string]: unknown };
}

export interface WaitOptions {
  /** How long to wait at most (at most 30 days). */
  timeout: Duration;
  /** A condition on the awaited event's properties. */
  where?: Criteria;
  /** Names the step in the run's timeline. */
  label?: string;
}

export interface CountOptions {
  /** Whose events: a resolved key or user id. Default: this run's person. */
  person?: string;
  /** Only events within this long of now. */
  within?: Duration;
  /** Only events at or after this instant; `'runStart'` for since this run started. */
  since?: Timestamp | Date | 'runStart';
}

/** Reads of one bucket. Each read is a journaled step. */
export class BucketReader {
  constructor(
    private readonly host: Host,
    readonly id: string,
  ) {}

  /** How many current members the bucket has. */
  count(): number {
    return this.host.bucketCount(this.id);
  }

  /** Whether the person (a resolved key, or a key they had before) is a current member. */
  has(personKey: string): boolean {
    return this.host.bucketHas(this.id, personKey);
  }

  /** One page of current members (50 by default, at most 100). */
  members(page: { limit?: number; cursor?: string | null } = {}): MemberPage {
    if (page.limit !== undefined && (!Number.isInteger(page.limit) || page.limit < 1)) {
      throw new TypeError(`bucket("${this.id}").members: limit must be a whole number >= 1`);
    }
    const raw = this.host.bucketMembers(this.id, page.limit, page.cursor ?? undefined);
    return {
      members: raw.members.map(member),
      nextCursor: raw.nextCursor ?? null,
      total: raw.total,
    };
  }

  /** Every current member, page by page (each page one step). */
  *eachMember(pageSize?: number): Generator<Member, void, undefined> {
    let cursor: string | null = null;
    do {
      const page: MemberPage = this.members({ limit: pageSize, cursor });
      yield* page.members;
      cursor = page.nextCursor;
    } while (cursor !== null);
  }
}

function member(raw: RawMember): Member {
  return { key: raw.key, email: raw.email ?? null, enteredAt: raw.enteredAt, entryCount: raw.entryCount };
}

export function parseProperties(json: string, what: string): Properties {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new Error(`${what} are not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${what} are not a JSON object`);
  }
  return value as Properties;
}

export function eventFrom(raw: RawEvent): Event {
  return new Event(raw.name, raw.occurredAt, parseProperties(raw.propertiesJson, `event ${raw.name}'s properties`));
}

function propertiesJson(value: unknown, what: string): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${what} must be an object of properties`);
  }
  return JSON.stringify(value);
}

/** The handler's view of its run and of the host. */
export class Ctx {
  /** The person this run is for, as they were when it started. */
  readonly person: Person;
  /** The event that started the run. */
  readonly trigger: Event;
  readonly runId: string;
  /** The journey (or reaction) being run. */
  readonly journeyId: string;

  constructor(
    private readonly host: Host,
    invocation: RawInvocation,
  ) {
    const p = invocation.person;
    this.person = new Person(p.key, p.email ?? null, parseProperties(p.propertiesJson, "the person's properties"));
    this.trigger = eventFrom(invocation.trigger);
    this.runId = invocation.runId;
    this.journeyId = invocation.handler;
  }

  /** The host clock, in ms since the Unix epoch. */
  now(): Timestamp {
    return this.host.now();
  }

  /** A random number in [0, 1), like `Math.random()` but journaled. */
  random(): number {
    return Number(this.host.random() >> 11n) / 2 ** 53;
  }

  /** A random whole number in [0, n). */
  randomInt(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new TypeError(`randomInt(n): n must be a whole number >= 1, got ${n}`);
    return Number(this.host.random() % BigInt(n));
  }

  /** Durable sleep: the run suspends and carries on once `duration` has passed. */
  sleep(duration: Duration, label?: string): void {
    this.host.sleep(checkDuration(duration, 'sleep duration'), label);
  }

  /** Durable sleep until an instant (one already past returns at once). */
  sleepUntil(at: Timestamp | Date, label?: string): void {
    this.host.sleepUntil(checkTimestamp(at, 'sleepUntil instant'), label);
  }

  /**
   * Waits for this person's next event named `name` (after the wait began) that satisfies
   * `where`, or for `timeout` to pass. The event, or `null` on timeout.
   */
  waitFor(name: string, options: WaitOptions): Event | null {
    const timeout = checkDuration(options?.timeout, 'waitFor timeout');
    const got = this.host.waitForEvent(name, options.where?.toString(), timeout, options.label);
    return got === undefined ? null : eventFrom(got);
  }

  /**
   * Renders `template` and queues the email, exactly once. Returns the email's id. An email to
   * someone who unsubscribed, or within the journey's `suppress` window, is recorded as
   * suppressed (it still has an id). Throws a `HostError` when it cannot be queued (unknown
   * template, no recipient, bad vars).
   */
  sendEmail(template: string, options: EmailOptions = {}): string {
    const vars = options.vars === undefined ? '{}' : propertiesJson(options.vars, 'email vars');
    return this.host.sendEmail(template, options.to, vars);
  }

  /** Ingests an event for this person after this activation commits (exactly once). */
  emit(name: string, properties: { [key: string]: unknown } = {}): void {
    this.host.trigger(name, undefined, propertiesJson(properties, 'event properties'));
  }

  /** Ingests an event for another person (a resolved key or user id; a new one is created). */
  emitFor(personKey: string, name: string, properties: { [key: string]: unknown } = {}): void {
    this.host.trigger(name, personKey, propertiesJson(properties, 'event properties'));
  }

  /** Merges properties into this person's contact (`null` removes one), after the commit. */
  updateContact(patch: { [key: string]: unknown }): void {
    this.host.updateContact(propertiesJson(patch, 'the contact patch'));
  }

  /** Marks where the run is, shown as its current step. */
  checkpoint(label: string): void {
    this.host.checkpoint(label);
  }

  /** Whether this person still accepts email. */
  isSubscribed(): boolean {
    return this.host.isSubscribed();
  }

  /** How many events named `name` this person (or `options.person`) has. */
  countEvents(name: string, options: CountOptions = {}): number {
    if (options.since !== undefined) {
      if (options.within !== undefined) throw new TypeError('countEvents: give `within` or `since`, not both');
      const since = options.since === 'runStart' ? undefined : checkTimestamp(options.since, 'countEvents since');
      return this.host.historyEventCountSince(options.person, name, since);
    }
    const within = options.within === undefined ? undefined : checkDuration(options.within, 'countEvents within');
    return this.host.historyEventCount(options.person, name, within);
  }

  /** This person's (or `options.person`'s) runs of `journey`, this one included. */
  journeyHistory(journey: string, options: { person?: string } = {}): JourneyHistory {
    const h = this.host.historyJourney(options.person, journey);
    return { entries: h.entries, completed: h.completed, lastCompletedAt: h.lastCompletedAt ?? null };
  }

  /** The emails of `template` to this person's address (or `options.to`). */
  emailHistory(template: string, options: { to?: string } = {}): EmailHistory {
    const h = this.host.historyEmail(options.to, template);
    return { count: h.count, lastSentAt: h.lastSentAt ?? null };
  }

  /** Reads of a bucket of this tenant. */
  bucket(id: string): BucketReader {
    return new BucketReader(this.host, id);
  }

  /** Writes to the host's log (not journaled; silent while a run replays). */
  log(level: LogLevel, message: string): void {
    this.host.log(level, String(message));
  }
  trace(message: string): void {
    this.log('trace', message);
  }
  debug(message: string): void {
    this.log('debug', message);
  }
  info(message: string): void {
    this.log('info', message);
  }
  warn(message: string): void {
    this.log('warn', message);
  }
  error(message: string): void {
    this.log('error', message);
  }
}

/** A journey or reaction handler. It may be `async`. */
export type Handler = (ctx: Ctx) => void | Promise<void>;
