/**
 * A run's journal as the host keeps it (host/src/journeys/journal.rs): the ordered record of
 * every step the handler took, and the replay cursor that answers recorded steps and detects a
 * handler that no longer does what it did.
 *
 * @internal
 */
import type { Json } from '../criteria.js';
import type { Timestamp } from '../duration.js';
import { canonicalJson, deepFreeze } from './text.js';

/**
 * What kind of step a journal entry records, named as the host names it (the `kind` column
 * of a run's journal and the words of a divergence). Every `ctx` call but logging is one:
 *
 * | step | `ctx` call |
 * |---|---|
 * | `now`, `random` | `now()`; `random()`, `randomInt()` |
 * | `sleep`, `sleep-until` | `sleep()`, `sleepUntil()` |
 * | `wait-for-event` then `wait-resolved` | `waitFor()` (its start, then the event or the timeout) |
 * | `send-email` | `sendEmail()` |
 * | `trigger`, `update-contact` | `emit()` / `emitFor()`, `updateContact()` |
 * | `checkpoint`, `is-subscribed` | `checkpoint()`, `isSubscribed()` |
 * | `history-event-count`, `history-journey`, `history-email` | `countEvents()`, `journeyHistory()`, `emailHistory()` |
 * | `bucket-count`, `bucket-has`, `bucket-members` | `bucket(id).count()`, `.has()`, `.members()` (each page) |
 *
 * The `wasi-*` kinds record WASI clock and random reads on the host; a kit run never has them.
 */
export type StepKind =
  | 'now'
  | 'random'
  | 'sleep'
  | 'send-email'
  | 'wasi-wall-clock'
  | 'wasi-monotonic-clock'
  | 'wasi-random'
  | 'bucket-count'
  | 'bucket-has'
  | 'bucket-members'
  | 'sleep-until'
  | 'wait-for-event'
  | 'wait-resolved'
  | 'checkpoint'
  | 'trigger'
  | 'update-contact'
  | 'is-subscribed'
  | 'history-event-count'
  | 'history-journey'
  | 'history-email';

/** A step's answer: JSON, except `random`'s, a `bigint` (the host journals a u64). */
export type StepResponse = Json | bigint;

/** One recorded step of a run's journal, as the host records it. */
export interface Step {
  /** Position in the run's journal, from 0. */
  readonly seq: number;
  readonly kind: StepKind;
  /** What the handler asked for (compared on replay), as the host journals it. */
  readonly request: Json;
  /** What the host answered (returned on replay), as the host journals it. */
  readonly response: StepResponse;
  /** The virtual time of the activation that recorded it. */
  readonly recordedAt: Timestamp;
}

/** A handler that replays differently from its journal, in the host's words. */
export class Divergence {
  constructor(
    readonly seq: number,
    readonly expectedKind: string,
    readonly expectedRequest: string,
    readonly actualKind: string,
    readonly actualRequest: string,
  ) {}

  get message(): string {
    return (
      `non-deterministic replay at step ${this.seq}: the journal recorded ${this.expectedKind} ` +
      `${this.expectedRequest} but the handler called ${this.actualKind} ${this.actualRequest}`
    );
  }
}

/** The host's reason for a run that reached its step cap. */
export function stepCapMessage(max: number): string {
  return (
    `the run reached its cap of ${max} journal steps (a handler that loops without end?); ` +
    'raise it with `waymark serve --max-run-steps`'
  );
}

/** The answer to a step the handler is taking. */
export type StepLookup = { recorded: Step } | { frontier: number };

/** A cursor over one run's journal during one activation. */
export class Replay {
  private cursor = 0;
  readonly fresh: Step[] = [];

  constructor(private readonly recorded: readonly Step[]) {}

  /** True while the handler is still re-walking recorded steps. */
  get replaying(): boolean {
    return this.cursor < this.recorded.length;
  }

  /** How many recorded steps the handler has walked again. */
  get replayed(): number {
    return this.cursor;
  }

  /** Advance to the handler's next step: answer it from the journal or mark the frontier. */
  step(kind: StepKind, request: Json): StepLookup | Divergence {
    const entry = this.recorded[this.cursor];
    if (entry !== undefined) {
      const text = canonicalJson(request);
      const recordedText = canonicalJson(entry.request);
      if (entry.kind !== kind || recordedText !== text) {
        return new Divergence(entry.seq, entry.kind, recordedText, kind, text);
      }
      this.cursor++;
      return { recorded: entry };
    }
    return { frontier: this.nextSeq() };
  }

  nextSeq(): number {
    return this.recorded.length + this.fresh.length;
  }

  /** Record the result of a frontier step. */
  record(kind: StepKind, request: Json, response: StepResponse, at: Timestamp): Step {
    const step: Step = deepFreeze({ seq: this.nextSeq(), kind, request, response, recordedAt: at });
    this.fresh.push(step);
    return step;
  }

  /** When the handler finished: every recorded step must have been walked again. */
  checkFullyReplayed(): Divergence | undefined {
    const entry = this.recorded[this.cursor];
    if (entry === undefined) return undefined;
    return new Divergence(entry.seq, entry.kind, canonicalJson(entry.request), 'return', '(the handler finished)');
  }
}
