/**
 * The seam between the SDK and whatever runs it: the WIT `context` imports with plain
 * TypeScript types (numbers instead of BigInt, `undefined` instead of WIT options). The
 * component binding (`component.ts`) implements it over the real host; the test kit
 * (`testing/`) over a fake one. Handlers never see it: they get a {@link Ctx}.
 *
 * Every method but `log` is a journaled step on the real host. Methods that can fail throw a
 * {@link HostError} carrying the host's reason.
 */
import type { Duration, Timestamp } from './duration.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** An event as the host hands it over (properties still JSON text). */
export interface RawEvent {
  name: string;
  occurredAt: Timestamp;
  propertiesJson: string;
}

export interface RawMember {
  key: string;
  email: string | undefined;
  enteredAt: Timestamp;
  entryCount: number;
}

export interface RawMemberPage {
  members: RawMember[];
  nextCursor: string | undefined;
  total: number;
}

export interface RawJourneyHistory {
  entries: number;
  completed: number;
  lastCompletedAt: Timestamp | undefined;
}

export interface RawEmailHistory {
  count: number;
  lastSentAt: Timestamp | undefined;
}

export interface Host {
  now(): Timestamp;
  /** A uniformly random unsigned 64-bit number. */
  random(): bigint;
  sleep(duration: Duration, label: string | undefined): void;
  sleepUntil(at: Timestamp, label: string | undefined): void;
  waitForEvent(
    name: string,
    whereJson: string | undefined,
    timeout: Duration,
    label: string | undefined,
  ): RawEvent | undefined;
  trigger(name: string, personKey: string | undefined, propertiesJson: string): void;
  updateContact(propertiesJson: string): void;
  historyEventCount(personKey: string | undefined, name: string, within: Duration | undefined): number;
  historyEventCountSince(personKey: string | undefined, name: string, since: Timestamp | undefined): number;
  historyJourney(personKey: string | undefined, journey: string): RawJourneyHistory;
  historyEmail(to: string | undefined, template: string): RawEmailHistory;
  checkpoint(label: string): void;
  sendEmail(template: string, to: string | undefined, varsJson: string): string;
  isSubscribed(): boolean;
  bucketCount(bucket: string): number;
  bucketHas(bucket: string, personKey: string): boolean;
  bucketMembers(bucket: string, limit: number | undefined, cursor: string | undefined): RawMemberPage;
  log(level: LogLevel, message: string): void;
}

/** What a run is invoked with; identical on every activation of the run. */
export interface RawInvocation {
  handler: string;
  runId: string;
  person: { key: string; email: string | undefined; propertiesJson: string };
  trigger: RawEvent;
}

/** A host call that answered with an error (`result::err`): `message` is the host's reason. */
export class HostError extends Error {
  constructor(
    /** The call that failed, e.g. `send-email`. */
    readonly call: string,
    /** The host's reason. */
    readonly reason: string,
  ) {
    super(`${call} failed: ${reason}`);
    this.name = 'HostError';
  }
}
