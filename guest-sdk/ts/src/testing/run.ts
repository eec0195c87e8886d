/**
 * {@link TestRun}: one run as a test sees it — its status, its journal, what it sent and
 * emitted, and every activation — live while the run goes on.
 */
import type { Properties } from '../ctx.js';
import type { Timestamp } from '../duration.js';
import type { Step } from './journal.js';
import { canonicalJson, formatInstant } from './text.js';
import type {
  ActivationReport,
  ContactUpdate,
  EmittedEvent,
  LogLine,
  PersonSnapshot,
  RecordedEvent,
  RunStatus,
  SentEmail,
  SkipReason,
  StopOptions,
  TestEvent,
  WaitState,
} from './types.js';
import { type RunState, type Stop, TestKitError, type World, instant } from './world.js';

/** How to continue a run that has not ended. */
export interface ResumeOptions extends StopOptions {
  /** Events to send first, `after` counted from now. */
  events?: readonly TestEvent[];
}

/** Reads a test's stop options. @internal */
export function stopOf(world: World, options: StopOptions): Stop {
  const stop: Stop = {};
  if (options.until !== undefined) {
    stop.until = instant(options.until, 'until');
    if (stop.until < world.clock) {
      throw new TestKitError(
        `until (${formatInstant(stop.until)}) is before the kit's clock (${formatInstant(world.clock)}): the kit's time only moves forward`,
      );
    }
  }
  if (options.activations !== undefined) {
    if (!Number.isSafeInteger(options.activations) || options.activations < 0) {
      throw new TestKitError(`activations must be a whole number >= 0, got ${String(options.activations)}`);
    }
    stop.activations = options.activations;
  }
  return stop;
}

/**
 * A run of a journey (or bucket reaction) in the kit. The kit drives it to its end, or to the
 * stop a test asked for; {@link TestRun.resume} drives it on.
 *
 * ```ts
 * const run = await kit.run('onboarding', { person: ada, until: kit.now + days(1) });
 * assert.equal(run.status, 'waiting');
 * assert.deepEqual(run.waitingFor?.event, 'project.created');
 * await run.resume();
 * assert.equal(run.status, 'completed', run.timeline());
 * ```
 */
export class TestRun {
  readonly #state: RunState;
  readonly #world: World;

  /** @internal Runs come from {@link TestKit.run} and {@link TestKit.react}. */
  constructor(state: RunState, world: World) {
    this.#state = state;
    this.#world = world;
  }

  /** Stable within a kit: `run-1`, `run-2`, … */
  get id(): string {
    return this.#state.id;
  }
  /** The journey (or reaction journey) run. */
  get journeyId(): string {
    return this.#state.spec.id;
  }
  /** The person as they were when the run started (every activation sees exactly this). */
  get person(): PersonSnapshot {
    return this.#state.person;
  }
  /** The event that started the run. */
  get trigger(): { readonly name: string; readonly occurredAt: Timestamp; readonly properties: Properties } {
    return this.#state.trigger;
  }
  get startedAt(): Timestamp {
    return this.#state.startedAt;
  }
  /** `active` (due), `waiting` (suspended), `completed`, `failed`, `exited`, or `skipped` (never started). */
  get status(): RunStatus {
    return this.#state.status;
  }
  /** Why the enrollment guards did not start it (`skipped` only). */
  get skipReason(): SkipReason | null {
    return this.#state.skipReason;
  }
  /** Why it failed, in the host's words (`failed` only). */
  get error(): string | null {
    return this.#state.error;
  }
  /** When it completed, failed or exited. */
  get endedAt(): Timestamp | null {
    return this.#state.endedAt;
  }
  /** The event that ended it (`exited` only). */
  get exitedBy(): RecordedEvent | null {
    return this.#state.exitedBy;
  }
  /** A waiting run's next wake: its sleep's end or its wait's deadline. */
  get wakeAt(): Timestamp | null {
    return this.#state.wakeAt;
  }
  /** What a run suspended in `ctx.waitFor` waits for. */
  get waitingFor(): WaitState | null {
    return this.#state.wait;
  }

  /** The run's journal, in step order: what every activation committed. */
  get steps(): readonly Step[] {
    return this.#state.journal;
  }
  /** Every activation, in order, with the steps it replayed and performed. */
  get activations(): readonly ActivationReport[] {
    return this.#state.activations;
  }
  /** Emails the run queued or recorded as suppressed, in step order. */
  get emails(): readonly SentEmail[] {
    return this.#state.emails;
  }
  /** Events the run emitted (`ctx.emit`, `ctx.emitFor`). */
  get emitted(): readonly EmittedEvent[] {
    return this.#state.emitted;
  }
  /** Contact patches the run made (`ctx.updateContact`). */
  get contactUpdates(): readonly ContactUpdate[] {
    return this.#state.contactUpdates;
  }
  /** Log lines written while not replaying (so each once), failed activations' included. */
  get logs(): readonly LogLine[] {
    return this.#state.logs;
  }

  /**
   * What the kit noticed that the host would not tell: calls of `Math.random()` and
   * `Date.now()` while the handler ran. Neither is journaled, so a handler that steers by
   * them can take another path on replay.
   */
  get warnings(): readonly string[] {
    const { mathRandom, dateNow } = this.#state.globals;
    const times = (n: number) => (n === 1 ? 'once' : `${n} times`);
    const warnings: string[] = [];
    if (mathRandom > 0) {
      warnings.push(
        `the handler called Math.random() ${times(mathRandom)}: it is not journaled (and in a built module it gives ` +
          'the same numbers in every activation of every run); use ctx.random() or ctx.randomInt(n)',
      );
    }
    if (dateNow > 0) {
      warnings.push(
        `the handler called Date.now() ${times(dateNow)}: it is not journaled (and a built module has no clock to ` +
          'read), so it does not answer what the first activation saw; use ctx.now()',
      );
    }
    return warnings;
  }

  /**
   * Drives the run on: to its end, or to `until` / after `activations` more activations.
   * Other live runs of the kit move along with the clock.
   */
  async resume(options: ResumeOptions = {}): Promise<this> {
    const stop = stopOf(this.#world, options);
    for (const event of options.events ?? []) this.#world.schedule(event, this.#world.clock, this.#state.person.key);
    await this.#world.drive(this.#state, stop);
    return this;
  }

  /** Sends an event for the run's person (or `event.person`), `after` counted from now. */
  send(event: TestEvent): this {
    this.#world.schedule(event, this.#world.clock, this.#state.person.key);
    return this;
  }

  /**
   * The run's story, one line per activation — what each replayed and performed and how it
   * ended. Handy as an assertion message: `assert.equal(run.status, 'completed', run.timeline())`.
   */
  timeline(): string {
    const s = this.#state;
    const lines = [`${s.id} of ${JSON.stringify(s.spec.id)} for ${JSON.stringify(s.person.key)}: ${s.status}`];
    if (s.status === 'skipped') lines[0] += ` (${s.skipReason})`;
    for (const a of s.activations) {
      const why = a.wokenBy === 'event' ? `event ${a.event}` : a.wokenBy;
      const performed = a.performed.map((p) => `${p.kind} ${canonicalJson(p.request)}`).join(', ');
      const outcome =
        a.outcome === 'suspended'
          ? `suspended until ${formatInstant(a.wakeAt ?? 0)}`
          : a.outcome === 'failed'
            ? `failed (nothing committed): ${a.error}`
            : 'completed';
      lines.push(
        `  #${a.index} ${formatInstant(a.at)} (${why}): replayed ${a.replayed.length}; ` +
          `performed ${performed === '' ? 'nothing' : performed} -> ${outcome}`,
      );
    }
    if (s.status === 'exited' && s.exitedBy !== null) {
      lines.push(`  exited ${formatInstant(s.exitedBy.receivedAt)} on ${s.exitedBy.name}`);
    }
    return lines.join('\n');
  }
}
