/**
 * {@link testModule}: a module's handlers in node, against a fake host with virtual time.
 */
import type { Properties } from '../ctx.js';
import type { Duration, Timestamp } from '../duration.js';
import { type BucketDef, LEAVE_REASONS, type Module } from '../module.js';
import { describeModule } from './describe.js';
import { TestRun, stopOf } from './run.js';
import { quoted } from './text.js';
import type {
  Instant,
  KitOptions,
  ManifestJson,
  MemberFixture,
  PersonFixture,
  PersonSnapshot,
  ReactOptions,
  RecordedEvent,
  RunOptions,
  SentEmail,
  TestEvent,
} from './types.js';
import { type RunState, TestKitError, World, dwellLabel, instant } from './world.js';

/**
 * A module under test: its handlers run against a fake host that keeps the host's rules —
 * journaled steps replayed from the top on every activation, divergence detected in the host's
 * words, durable sleeps and waits on a virtual clock, emails checked and suppressed, exit rules,
 * entry limits, caps. Create one per test with {@link testModule}.
 *
 * The kit is one small world: a virtual clock (it only moves forward), the people it knows,
 * their events, the buckets' members, the emails sent. Every run it starts lives in that world:
 * driving one run moves the clock, and every other live run of the kit along with it.
 */
export class TestKit {
  readonly #world: World;
  readonly #facades = new Map<RunState, TestRun>();

  /** @internal Use {@link testModule}. */
  constructor(module: Module, options: KitOptions = {}) {
    this.#world = new World(module, options);
  }

  /** The module under test. */
  get module(): Module {
    return this.#world.module;
  }

  /** The virtual clock, in ms since the Unix epoch. */
  get now(): Timestamp {
    return this.#world.clock;
  }

  /** The module's manifest as plain JSON, to check its declarations. */
  describe(): ManifestJson {
    return describeModule(this.#world.module);
  }

  /**
   * Starts a run of journey `journeyId` (or of a reaction journey, by its id) for a person, and
   * drives it — activation after activation, the clock jumping to whatever is due next — until
   * it completes, fails or exits, or until the stop in `options` (`until`, `activations`).
   *
   * The host's enrollment guards apply first: a disabled journey, a `where` the trigger does not
   * satisfy, an entry limit, an unsubscribed person or a live run make it `skipped`. A failing
   * run is not an exception: it ends `failed` with the host's reason in `error`.
   *
   * ```ts
   * const run = await kit.run('onboarding', {
   *   person: { key: 'u1', email: 'ada@example.com', properties: { name: 'Ada' } },
   *   events: [{ name: 'project.created', after: days(2), properties: { name: 'Apollo' } }],
   * });
   * ```
   *
   * @throws {TestKitError} for a mistake in the test: an unknown journey, another trigger
   *   name, an unknown person key, an instant in the kit's past, a run over `maxActivations`.
   */
  async run(journeyId: string, options: RunOptions): Promise<TestRun> {
    const world = this.#world;
    const spec = world.spec(journeyId);
    const name = options.trigger?.name ?? spec.trigger;
    if (name !== spec.trigger) {
      throw new TestKitError(`${quoted(journeyId)} is triggered by ${quoted(spec.trigger)}, not ${quoted(name)}`);
    }
    return this.#start(spec.id, options, {
      name,
      properties: options.trigger?.properties,
      occurredAt: options.trigger?.occurredAt,
    });
  }

  /**
   * Runs a bucket's reaction as the host does when a person enters, leaves or dwells in the
   * bucket: the transition is recorded (an `enter` adds the person to the bucket's members, a
   * `leave` removes them), then the transition event — `bucket:entered:<id>`,
   * `bucket:left:<id>` or `bucket:dwell:<id>:<label>`, with the host's properties
   * (`bucketId`, `bucketName`, `userId`, `transition`, `source`, `entryCount`, and
   * `isFirstEntry`, `reason` or `dwellLabel` / `dwellCount`) — starts the reaction's journey.
   * Its options filter it as on the host: a `firstEntryOnly` reaction skips `entryCount: 2`.
   *
   * ```ts
   * const run = await kit.react('active-creators', 'enter', { person: 'u1' });
   * ```
   */
  async react(bucketId: string, transition: 'enter' | 'leave' | 'dwell', options: ReactOptions): Promise<TestRun> {
    const world = this.#world;
    const bucket = world.module.manifest.buckets.find((b) => b.id === bucketId);
    if (bucket === undefined) {
      const known = world.module.manifest.buckets.map((b) => quoted(b.id));
      throw new TestKitError(
        `the module declares no bucket ${quoted(bucketId)}${known.length > 0 ? ` (its buckets: ${known.join(', ')})` : ''}`,
      );
    }
    const reaction = pickReaction(bucket, transition, options);
    const entryCount = options.entryCount ?? 1;
    const properties: { [key: string]: unknown } = {
      bucketId: bucket.id,
      bucketName: bucket.name,
      transition: transition === 'enter' ? 'entered' : transition === 'leave' ? 'left' : 'dwell',
      source: options.source ?? 'event',
      entryCount,
    };
    if (transition === 'enter') properties.isFirstEntry = entryCount === 1;
    if (transition === 'leave') {
      const reason = options.reason ?? 'criteria';
      if (!LEAVE_REASONS.includes(reason)) {
        throw new TestKitError(`${quoted(reason)} is not a leave reason (one of ${LEAVE_REASONS.join(', ')})`);
      }
      properties.reason = reason;
    }
    if ('dwell' in reaction.on) {
      properties.dwellLabel = dwellLabel(reaction.on.dwell);
      properties.dwellCount = options.dwellCount ?? 1;
    }
    const spec = world.spec(reaction.journeyId);
    return this.#start(spec.id, options, { name: spec.trigger, properties, occurredAt: undefined }, (key) => {
      properties.userId = key;
      if (transition !== 'dwell') world.moveMember(bucket.id, key, transition === 'enter', entryCount);
    });
  }

  async #start(
    journeyId: string,
    options: RunOptions | ReactOptions,
    trigger: { name: string; properties: { readonly [key: string]: unknown } | undefined; occurredAt: Instant | undefined },
    beforeStart?: (personKey: string) => void,
  ): Promise<TestRun> {
    const world = this.#world;
    if (options === null || typeof options !== 'object' || options.person === undefined) {
      throw new TestKitError(`a run of ${quoted(journeyId)} needs a person`);
    }
    const spec = world.spec(journeyId);
    if (options.at !== undefined) await this.advanceTo(options.at);
    const stop = stopOf(world, options);
    const person =
      typeof options.person === 'string' ? world.person(options.person) : world.addPerson(options.person);
    if (person === undefined) {
      throw new TestKitError(
        `the kit knows no person ${quoted(String(options.person))}: declare them (person: { key, email, properties }) first`,
      );
    }
    beforeStart?.(person.key);
    const state = world.startRun(
      spec,
      person,
      {
        name: trigger.name,
        properties: trigger.properties,
        occurredAt: trigger.occurredAt === undefined ? undefined : instant(trigger.occurredAt, 'trigger.occurredAt'),
      },
      options.random ?? [],
    );
    const run = this.#facade(state);
    for (const event of options.events ?? []) world.schedule(event, state.startedAt, person.key);
    if (state.live) await world.drive(state, stop);
    return run;
  }

  #facade(state: RunState): TestRun {
    let run = this.#facades.get(state);
    if (run === undefined) {
      run = new TestRun(state, this.#world);
      this.#facades.set(state, run);
    }
    return run;
  }

  /**
   * Sends an event: `event.person` fires it `after` this long from now (or `at` an instant).
   * It reaches every live run of that person when the clock gets there.
   */
  send(event: TestEvent & { person: string }): RecordedEvent {
    return this.#world.schedule(event, this.#world.clock, event.person);
  }

  /** Moves the clock on by `duration`, driving every live run through what falls due. */
  async advance(duration: Duration): Promise<void> {
    if (!Number.isSafeInteger(duration) || duration < 0) {
      throw new TestKitError(`advance takes a whole, non-negative number of milliseconds, got ${String(duration)}`);
    }
    await this.advanceTo(this.#world.clock + duration);
  }

  /** Moves the clock to `at`, driving every live run through what falls due. */
  async advanceTo(at: Instant): Promise<void> {
    const world = this.#world;
    const stop = stopOf(world, { until: at });
    await world.drive(undefined, stop);
  }

  /** Declares a person (replacing one of the same key); see {@link PersonFixture}. */
  addPerson(fixture: PersonFixture): void {
    this.#world.addPerson(fixture);
  }

  /** A person as the kit knows them now: their contact with every committed `updateContact` applied. */
  person(key: string): PersonSnapshot | undefined {
    const p = this.#world.person(key);
    if (p === undefined) return undefined;
    return { key: p.key, email: p.email, properties: JSON.parse(JSON.stringify(p.properties)) as Properties };
  }

  /** Sets a bucket's current members, in paging order (a bucket id the module does not declare is another module's). */
  setBucket(bucketId: string, members: readonly (string | MemberFixture)[]): void {
    this.#world.setBucket(bucketId, members);
  }

  /** The keys of a bucket's current members, or undefined for an unknown bucket. */
  bucketMembers(bucketId: string): string[] | undefined {
    return this.#world.members(bucketId)?.map((m) => m.key);
  }

  /** A person (by key) or an address unsubscribes from now on. */
  unsubscribe(keyOrAddress: string): void {
    this.#world.unsubscribe(keyOrAddress);
  }

  /** Every run the kit started, skipped ones included. */
  get runs(): readonly TestRun[] {
    return this.#world.runs.map((s) => this.#facade(s));
  }

  /** Every email the kit's runs queued or suppressed. */
  get emails(): readonly SentEmail[] {
    return this.#world.emails;
  }

  /** Every event the kit stored: fixtures' history, triggers, sent and emitted events. */
  get events(): readonly RecordedEvent[] {
    return this.#world.events;
  }
}

function pickReaction(bucket: BucketDef, transition: 'enter' | 'leave' | 'dwell', options: ReactOptions): BucketDef['reactions'][number] {
  const candidates = bucket.reactions.filter((r) => transition in r.on);
  if (transition === 'dwell' && options.dwell !== undefined) {
    const want = options.dwell;
    const found = candidates.find((r) => {
      if (!('dwell' in r.on)) return false;
      return 'after' in want ? r.on.dwell.afterMs === want.after : r.on.dwell.everyMs === want.every;
    });
    if (found === undefined) {
      throw new TestKitError(`bucket ${quoted(bucket.id)} has no dwell reaction ${JSON.stringify(want)}`);
    }
    return found;
  }
  if (candidates.length === 0) throw new TestKitError(`bucket ${quoted(bucket.id)} has no ${transition} reaction`);
  if (candidates.length > 1) {
    throw new TestKitError(`bucket ${quoted(bucket.id)} has ${candidates.length} dwell reactions: say which with dwell: { after } or { every }`);
  }
  return candidates[0]!;
}

/**
 * A test kit for `module`: run its journeys and reactions in node against a fake host with
 * virtual time.
 *
 * ```ts
 * import { test } from 'node:test';
 * import assert from 'node:assert/strict';
 * import { testModule, days } from '@waymark/guest/testing';
 * import module from '../src/index.ts';
 *
 * test('a user who creates a project is congratulated', async () => {
 *   const kit = testModule(module, { startAt: Date.parse('2026-01-05T09:00:00Z') });
 *   const run = await kit.run('onboarding', {
 *     person: { key: 'u1', email: 'ada@example.com', properties: { name: 'Ada' } },
 *     events: [{ name: 'project.created', after: days(2), properties: { name: 'Apollo' } }],
 *   });
 *   assert.equal(run.status, 'completed', run.timeline());
 *   assert.deepEqual(run.emails.map((e) => e.template), ['welcome', 'first-project']);
 * });
 * ```
 *
 * @throws {ModuleError} when the module's conditions do not parse as the host parses them.
 */
export function testModule(module: Module, options: KitOptions = {}): TestKit {
  return new TestKit(module, options);
}

/** A person fixture: `person('u1', { email: 'ada@example.com', properties: { name: 'Ada' } })`. */
export function person(key: string, rest: Omit<PersonFixture, 'key'> = {}): PersonFixture {
  return { key, ...rest };
}
