/**
 * The fake host of one activation: the SDK's {@link Host} seam implemented the way
 * host/src/runtime/host.rs implements the WIT `context` imports — every call but `log` goes
 * through the run's journal (answered from it while the handler re-walks recorded steps,
 * performed and recorded at the frontier), with the host's checks, requests, responses and
 * error wording.
 *
 * Where the host ends the guest call (a suspension, a refused step, a fault) the wasm guest
 * cannot catch it; a JavaScript handler can catch what the kit throws instead. So once the
 * activation is halted every further call throws again, and a call made after a caught
 * suspension is reported (see {@link Activation.misuse}).
 *
 * @internal
 */
import type { CriteriaJson, Json } from '../criteria.js';
import type { Properties } from '../ctx.js';
import type { Duration, Timestamp } from '../duration.js';
import {
  type Host,
  HostError,
  type LogLevel,
  type RawEmailHistory,
  type RawEvent,
  type RawJourneyHistory,
  type RawMemberPage,
} from '../host.js';
import { CriteriaError, leaves, parseConditionText } from './conditions.js';
import { Replay, type Step, type StepKind, type StepResponse, stepCapMessage } from './journal.js';
import { renderPreview } from './render.js';
import { deepFreeze, formatDuration, formatInstant, normalizeEmail, quoted, utf8Length } from './text.js';
import type { LogLine, SentEmail, SuppressedReason, WaitState } from './types.js';
import type { RunState, World } from './world.js';

/** Largest accepted string argument from a guest (the host's `MAX_IMPORT_PAYLOAD`). */
export const MAX_IMPORT_PAYLOAD = 64 * 1024;
/** The host's longest sleep: ten years of 365.25 days. */
export const MAX_SLEEP_MS = 10 * 31_557_600_000;
/** The host's longest wait: 30 days. */
export const MAX_WAIT_MS = 30 * 86_400_000;
const MAX_LOG_LINES = 200;
const MAX_LOG_BYTES = 64 * 1024;
const MAX_LOG_LINE = 4096;

/** Why an activation ended before the handler returned. */
export type HaltState =
  | { kind: 'suspend'; wakeAt: Timestamp; wait: WaitState | null; call: string; seq: number }
  | { kind: 'refused'; message: string }
  | { kind: 'fault'; message: string };

/** What the kit throws into the handler to end the activation (the host ends the guest call). */
export class ActivationHalted extends Error {
  constructor(readonly halt: HaltState) {
    super(
      halt.kind === 'suspend'
        ? `the run suspended at ${halt.call} (the waymark test kit ends the activation here, as the host does; do not catch this)`
        : halt.message,
    );
    this.name = 'ActivationHalted';
  }
}

/** An effect recorded at the frontier, applied after the activation commits. */
export type Effect =
  | { kind: 'trigger'; step: number; name: string; personKey: string; properties: Properties }
  | { kind: 'update-contact'; step: number; personKey: string; properties: Properties };

/** One activation's state: its journal cursor and what it produced, committed if it does not fail. */
export class Activation {
  readonly replay: Replay;
  halt: HaltState | null = null;
  /** The first call made after the handler caught a suspension. */
  misuse: { call: string; after: string } | null = null;
  readonly emails: SentEmail[] = [];
  readonly effects: Effect[] = [];
  readonly logs: LogLine[] = [];
  private logLinesLeft = MAX_LOG_LINES;
  private logBytesLeft = MAX_LOG_BYTES;
  readonly globals = { mathRandom: 0, dateNow: 0 };

  constructor(
    readonly run: RunState,
    readonly at: Timestamp,
    readonly index: number,
    readonly maxSteps: number,
  ) {
    this.replay = new Replay(run.journal);
  }

  /** Adds a log line within the host's per-activation limits. */
  log(level: LogLevel, message: string): void {
    if (this.logLinesLeft === 0) return;
    const line = [...message].slice(0, MAX_LOG_LINE).join('');
    this.logLinesLeft--;
    this.logBytesLeft = Math.max(0, this.logBytesLeft - utf8Length(line));
    if (this.logBytesLeft === 0) this.logLinesLeft = 0;
    this.logs.push({ activation: this.index, at: this.at, level, message: line });
    if (this.logLinesLeft === 0) {
      this.logs.push({
        activation: this.index,
        at: this.at,
        level: 'warn',
        message: `this activation reached its log limit (${MAX_LOG_LINES} lines or ${MAX_LOG_BYTES} bytes); its further lines are dropped`,
      });
    }
  }
}

/** The `ctx` call a host method serves, to name it in messages. */
const CTX_CALL: { [method: string]: string } = {
  now: 'ctx.now()',
  random: 'ctx.random()',
  sleep: 'ctx.sleep()',
  sleepUntil: 'ctx.sleepUntil()',
  waitForEvent: 'ctx.waitFor()',
  trigger: 'ctx.emit()',
  updateContact: 'ctx.updateContact()',
  historyEventCount: 'ctx.countEvents()',
  historyEventCountSince: 'ctx.countEvents()',
  historyJourney: 'ctx.journeyHistory()',
  historyEmail: 'ctx.emailHistory()',
  checkpoint: 'ctx.checkpoint()',
  sendEmail: 'ctx.sendEmail()',
  isSubscribed: 'ctx.isSubscribed()',
  bucketCount: 'ctx.bucket().count()',
  bucketHas: 'ctx.bucket().has()',
  bucketMembers: 'ctx.bucket().members()',
};

function properties(json: string): Properties | string {
  if (json.trim() === '') return {};
  try {
    const value: unknown = JSON.parse(json);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as Properties;
  } catch {
    // fall through
  }
  return `properties must be a JSON object, got ${quoted(json)}`;
}

/** A resolved wait as the host journals it. */
type Resolved =
  | { event: { id: string; name: string; occurredAt: number; receivedAt: number; properties: Properties } }
  | { timedOut: true };

/** The fake host one activation's `Ctx` talks to. */
export class KitHost implements Host {
  constructor(
    private readonly world: World,
    private readonly run: RunState,
    private readonly act: Activation,
  ) {}

  /** The activation's instant: the virtual clock does not move while a handler runs. */
  private get at(): Timestamp {
    return this.act.at;
  }

  // ---- the journal ----

  /** Every call starts here: once the activation is halted, nothing more happens. */
  private enter(method: string): void {
    const halt = this.act.halt;
    if (halt === null) return;
    if (halt.kind === 'suspend' && this.act.misuse === null) {
      this.act.misuse = { call: CTX_CALL[method] ?? method, after: halt.call };
    }
    throw new ActivationHalted(halt);
  }

  private stop(halt: HaltState): never {
    this.act.halt = halt;
    throw new ActivationHalted(halt);
  }

  private fault(message: string): never {
    return this.stop({ kind: 'fault', message });
  }

  private checkPayload(what: string, text: string): void {
    const bytes = utf8Length(text);
    if (bytes > MAX_IMPORT_PAYLOAD) this.fault(`${what} is ${bytes} bytes, over the ${MAX_IMPORT_PAYLOAD}-byte limit`);
  }

  /** The seq of the step looked up last (recorded or at the frontier), to name it in messages. */
  private lastSeq = 0;

  /** The recorded step, or the frontier's seq (a new step to perform and record). */
  private lookup(kind: StepKind, request: Json): { recorded: Step } | { frontier: number } {
    const found = this.act.replay.step(kind, request);
    if ('message' in found) return this.stop({ kind: 'refused', message: found.message });
    if ('frontier' in found && found.frontier >= this.act.maxSteps) {
      return this.stop({ kind: 'refused', message: stepCapMessage(this.act.maxSteps) });
    }
    this.lastSeq = 'recorded' in found ? found.recorded.seq : found.frontier;
    return found;
  }

  private record(kind: StepKind, request: Json, response: StepResponse): void {
    this.act.replay.record(kind, request, response, this.at);
  }

  /** A journaled step: its recorded answer, or `perform`'s, recorded. */
  private journaled(kind: StepKind, request: Json, perform: (seq: number) => StepResponse): StepResponse {
    const found = this.lookup(kind, request);
    if ('recorded' in found) return found.recorded.response;
    const response = perform(found.frontier);
    this.record(kind, request, response);
    return response;
  }

  /** A journaled read, recorded as `{"ok": …}` or `{"error": …}`; an error throws a HostError. */
  private read<T extends Json>(call: string, kind: StepKind, request: Json, perform: () => { ok: T } | { error: string }): T {
    const response = this.journaled(kind, request, () => perform() as Json) as { ok?: T; error?: string };
    if (typeof response.error === 'string') throw new HostError(call, response.error);
    return response.ok as T;
  }

  /** Ends the activation until `wakeAt` (or, waiting, until an awaited event comes). */
  private suspend(call: string, wakeAt: Timestamp, wait: WaitState | null, seq: number = this.lastSeq): never {
    return this.stop({ kind: 'suspend', wakeAt, wait, call: `${call} (step ${seq})`, seq });
  }

  // ---- the imports ----

  now(): Timestamp {
    this.enter('now');
    return this.journaled('now', null, () => this.act.at) as number;
  }

  random(): bigint {
    this.enter('random');
    const value = this.journaled('random', null, () => this.world.nextRandom(this.run));
    return typeof value === 'bigint' ? value : BigInt(value as number);
  }

  sleep(duration: Duration, label: string | undefined): void {
    this.enter('sleep');
    if (duration > MAX_SLEEP_MS) {
      this.fault(`a sleep of ${formatDuration(duration)} is longer than the maximum of ${formatDuration(MAX_SLEEP_MS)}`);
    }
    const name = label ?? `sleep ${formatDuration(duration)}`;
    this.checkPayload('the sleep label', name);
    const request = { durationMs: duration, label: name };
    const response = this.journaled('sleep', request, () => ({ wakeAt: this.at + duration })) as { wakeAt: number };
    // Past the wake time the sleep is over; otherwise the activation ends here.
    if (this.at < response.wakeAt) this.suspend('ctx.sleep()', response.wakeAt, null);
  }

  sleepUntil(at: Timestamp, label: string | undefined): void {
    this.enter('sleepUntil');
    const ahead = Math.max(0, at - this.at);
    if (ahead > MAX_SLEEP_MS) {
      this.fault(`a sleep of ${formatDuration(ahead)} is longer than the maximum of ${formatDuration(MAX_SLEEP_MS)}`);
    }
    const name = label ?? `sleep until ${formatInstant(at)}`;
    this.checkPayload('the sleep label', name);
    this.journaled('sleep-until', { at, label: name }, () => ({ wakeAt: at }));
    if (this.at < at) this.suspend('ctx.sleepUntil()', at, null);
  }

  waitForEvent(name: string, whereJson: string | undefined, timeout: Duration, label: string | undefined): RawEvent | undefined {
    this.enter('waitForEvent');
    this.checkPayload('the event name', name);
    if (whereJson !== undefined) this.checkPayload("the wait's where-json", whereJson);
    const waitLabel = label ?? `wait for ${name}`;
    this.checkPayload('the wait label', waitLabel);
    const filter = this.waitFilter(name, whereJson, timeout);

    // The wait's start, journaled: since when events count and until when to wait.
    const request = { event: name, where: filter, timeoutMs: timeout, label: waitLabel };
    const started = this.journaled('wait-for-event', request, () => ({
      since: this.at,
      deadline: this.at + timeout,
    })) as { since: number; deadline: number };
    const seq = this.lastSeq;

    // Its end: recorded once the event came or the time ran out.
    const resolvedRequest = { event: name };
    const found = this.lookup('wait-resolved', resolvedRequest);
    let response: Resolved;
    if ('recorded' in found) {
      response = found.recorded.response as unknown as Resolved;
    } else {
      // The trigger was received when the run started: a later event only.
      const from = Math.max(started.since, this.run.startedAt + 1);
      const until = Math.min(started.deadline, this.at);
      const event = this.world.firstMatch(this.run.person.key, name, from, until, filter);
      if (event !== undefined) {
        response = {
          event: {
            id: event.id,
            name: event.name,
            occurredAt: event.occurredAt,
            receivedAt: event.receivedAt,
            properties: event.properties,
          },
        };
      } else if (this.at >= started.deadline) {
        response = { timedOut: true };
      } else {
        return this.suspend('ctx.waitFor()', started.deadline, {
          event: name,
          where: filter,
          since: from,
          deadline: started.deadline,
          label: waitLabel,
        }, seq);
      }
      this.record('wait-resolved', resolvedRequest, response as unknown as Json);
    }
    if ('timedOut' in response) return undefined;
    const event = response.event;
    return { name: event.name, occurredAt: event.occurredAt, propertiesJson: JSON.stringify(event.properties) };
  }

  /** The host's checks of a wait's arguments; a refusal is the call's error (not journaled). */
  private waitFilter(name: string, whereJson: string | undefined, timeout: Duration): CriteriaJson | null {
    const refuse = (message: string): never => {
      throw new HostError('wait-for-event', message);
    };
    if (name.trim() === '') refuse('the event name is empty');
    if (timeout > MAX_WAIT_MS) {
      refuse(`timeout of ${formatDuration(timeout)} is over the ${formatDuration(MAX_WAIT_MS)} a wait may last`);
    }
    if (whereJson === undefined || whereJson.trim() === '') return null;
    let condition: CriteriaJson;
    try {
      condition = parseConditionText(whereJson);
    } catch (e) {
      return refuse(`where-json: ${e instanceof CriteriaError ? e.message : String(e)}`);
    }
    for (const leaf of leaves(condition)) {
      if (leaf.type === 'event') {
        refuse(
          "where-json: a wait's where holds property conditions only (on the event's properties), not event conditions",
        );
      }
    }
    return condition;
  }

  trigger(name: string, personKey: string | undefined, propertiesJson: string): void {
    this.enter('trigger');
    this.checkPayload('the event name', name);
    this.checkPayload("the event's properties", propertiesJson);
    if (personKey !== undefined) this.checkPayload('the person key', personKey);
    const props = properties(propertiesJson);
    if (typeof props === 'string') throw new HostError('trigger', props);
    if (name.trim() === '') throw new HostError('trigger', 'the event name is empty');
    if (name.startsWith('bucket:')) {
      throw new HostError('trigger', `${quoted(name)}: names starting with "bucket:" are reserved for bucket transitions`);
    }
    const key = personKey === undefined ? this.run.person.key : personKey.trim();
    if (key === '') throw new HostError('trigger', 'the person key is empty');
    this.journaled('trigger', { name, personKey: key, properties: props as Json }, (step) => {
      this.act.effects.push({ kind: 'trigger', step, name, personKey: key, properties: props });
      return null;
    });
  }

  updateContact(propertiesJson: string): void {
    this.enter('updateContact');
    this.checkPayload('the contact properties', propertiesJson);
    const props = properties(propertiesJson);
    if (typeof props === 'string') throw new HostError('update-contact', props);
    const personKey = this.run.person.key;
    this.journaled('update-contact', { properties: props as Json }, (step) => {
      this.act.effects.push({ kind: 'update-contact', step, personKey, properties: props });
      return null;
    });
  }

  historyEventCount(personKey: string | undefined, name: string, within: Duration | undefined): number {
    this.enter('historyEventCount');
    this.checkPayload('the event name', name);
    if (personKey !== undefined) this.checkPayload('the person key', personKey);
    const since = within === undefined ? undefined : this.at - within;
    const request = { personKey: personKey ?? null, name, withinMs: within ?? null };
    return this.read<number>('history-event-count', 'history-event-count', request, () => ({
      ok: this.world.eventCount(personKey ?? this.run.person.key, name, since),
    }));
  }

  historyEventCountSince(personKey: string | undefined, name: string, since: Timestamp | undefined): number {
    this.enter('historyEventCountSince');
    this.checkPayload('the event name', name);
    if (personKey !== undefined) this.checkPayload('the person key', personKey);
    // "Since the run started" is resolved here, so the journal records the instant.
    const from = since ?? this.run.startedAt;
    const request = { personKey: personKey ?? null, name, sinceMs: from };
    return this.read<number>('history-event-count-since', 'history-event-count', request, () => ({
      ok: this.world.eventCount(personKey ?? this.run.person.key, name, from),
    }));
  }

  historyJourney(personKey: string | undefined, journey: string): RawJourneyHistory {
    this.enter('historyJourney');
    this.checkPayload('the journey id', journey);
    if (personKey !== undefined) this.checkPayload('the person key', personKey);
    const h = this.read('history-journey', 'history-journey', { personKey: personKey ?? null, journey }, () => ({
      ok: this.world.journeyHistory(personKey ?? this.run.person.key, journey) as unknown as Json,
    })) as unknown as { entries: number; completed: number; lastCompletedAt: number | null };
    return { entries: h.entries, completed: h.completed, lastCompletedAt: h.lastCompletedAt ?? undefined };
  }

  historyEmail(to: string | undefined, template: string): RawEmailHistory {
    this.enter('historyEmail');
    this.checkPayload('the template key', template);
    if (to !== undefined) this.checkPayload('the address', to);
    const address = to !== undefined ? normalizeEmail(to) : this.run.person.email;
    const h = this.read('history-email', 'history-email', { to: address, template }, () =>
      address === null
        ? { error: 'the person has no email address and none was given' }
        : { ok: this.world.emailHistory(address, template) as unknown as Json },
    ) as unknown as { count: number; lastSentAt: number | null };
    return { count: h.count, lastSentAt: h.lastSentAt ?? undefined };
  }

  checkpoint(label: string): void {
    this.enter('checkpoint');
    this.checkPayload('the checkpoint label', label);
    this.journaled('checkpoint', { label }, () => null);
  }

  sendEmail(template: string, to: string | undefined, varsJson: string): string {
    this.enter('sendEmail');
    const call = `send-email (template ${quoted(template)})`;
    this.checkPayload('the template key', template);
    if (to !== undefined) this.checkPayload('the recipient address', to);
    this.checkPayload("the email's vars", varsJson);
    const vars = properties(varsJson);
    if (typeof vars === 'string') throw new HostError(call, `vars-json must be a JSON object, got ${quoted(varsJson)}`);
    const request = { template, to: to ?? null, vars: vars as Json };
    // The verdict (queued or suppressed, and why) is journaled with the id.
    const response = this.journaled('send-email', request, (step) => this.prepareEmail(step, template, to, vars)) as {
      ok?: string;
      error?: string;
    };
    if (typeof response.ok === 'string') return response.ok;
    throw new HostError(call, response.error ?? 'journaled send-email has no outcome');
  }

  /** The host's `prepare_email`: recipient, template (the tenant's first), verdict. */
  private prepareEmail(step: number, key: string, to: string | undefined, vars: Properties): Json {
    const person = this.run.person;
    let address: string;
    if (to !== undefined) {
      const normalized = normalizeEmail(to);
      if (normalized === null) return { error: 'the recipient address is empty' };
      address = normalized;
    } else if (person.email === null) {
      return { error: `person ${quoted(person.key)} has no email address and the email names no recipient` };
    } else {
      address = person.email;
    }
    if (!address.includes('@')) return { error: `${quoted(address)} is not an email address` };
    const template = this.world.template(key);
    if (template === undefined) return { error: `unknown template ${quoted(key)}` };

    const unsubscribeUrl = `https://waymark.invalid/unsubscribe/${encodeURIComponent(person.key)}`;
    const context = { ...person.properties, email: address, key: person.key, unsubscribe_url: unsubscribeUrl, ...vars };
    let suppressed: SuppressedReason | null = null;
    if (this.world.isUnsubscribed(person.key, address)) {
      suppressed = 'unsubscribed';
    } else if (
      this.run.spec.suppress > 0 &&
      (this.act.emails.some((e) => e.to === address && e.status === 'queued') ||
        this.world.journeyEmailedSince(this.run.spec.id, address, this.at - this.run.spec.suppress))
    ) {
      suppressed = 'journey_suppress_window';
    }
    const email: SentEmail = deepFreeze({
      id: this.world.nextEmailId(),
      runId: this.run.id,
      journeyId: this.run.spec.id,
      step,
      at: this.at,
      template: key,
      to: address,
      vars,
      status: suppressed === null ? ('queued' as const) : ('suppressed' as const),
      suppressedReason: suppressed,
      subject: renderPreview(template.subject, context).trim(),
      body: renderPreview(template.body, context),
      html: template.html === undefined ? null : renderPreview(template.html, context, true),
    });
    this.act.emails.push(email);
    return { ok: email.id, status: email.status, reason: suppressed };
  }

  isSubscribed(): boolean {
    this.enter('isSubscribed');
    const person = this.run.person;
    return this.read<boolean>('is-subscribed', 'is-subscribed', null, () => ({
      ok: !this.world.isUnsubscribed(person.key, person.email),
    }));
  }

  bucketCount(bucket: string): number {
    this.enter('bucketCount');
    this.checkPayload('the bucket id', bucket);
    return this.read<number>('bucket-count', 'bucket-count', { bucket }, () => {
      const members = this.world.members(bucket);
      return members === undefined ? { error: `unknown bucket ${quoted(bucket)}` } : { ok: members.length };
    });
  }

  bucketHas(bucket: string, personKey: string): boolean {
    this.enter('bucketHas');
    this.checkPayload('the bucket id', bucket);
    this.checkPayload('the person key', personKey);
    return this.read<boolean>('bucket-has', 'bucket-has', { bucket, key: personKey }, () => {
      const members = this.world.members(bucket);
      return members === undefined ? { error: `unknown bucket ${quoted(bucket)}` } : { ok: members.some((m) => m.key === personKey) };
    });
  }

  bucketMembers(bucket: string, limit: number | undefined, cursor: string | undefined): RawMemberPage {
    this.enter('bucketMembers');
    this.checkPayload('the bucket id', bucket);
    if (cursor !== undefined) this.checkPayload('the cursor', cursor);
    const request = { bucket, limit: limit ?? null, cursor: cursor ?? null };
    const page = this.read('bucket-members', 'bucket-members', request, () => {
      const members = this.world.members(bucket);
      if (members === undefined) return { error: `unknown bucket ${quoted(bucket)}` };
      const size = Math.min(Math.max(limit ?? 50, 1), 100);
      const after = cursor ?? '';
      const rest = members.filter((m) => m.id > after);
      const onPage = rest.slice(0, size);
      return {
        ok: {
          members: onPage.map((m) => ({ key: m.key, email: m.email, enteredAt: m.enteredAt, entryCount: m.entryCount })),
          nextCursor: rest.length > size ? onPage[onPage.length - 1]!.id : null,
          total: members.length,
        },
      };
    }) as unknown as {
      members: { key: string; email: string | null; enteredAt: number; entryCount: number }[];
      nextCursor: string | null;
      total: number;
    };
    return {
      members: page.members.map((m) => ({ key: m.key, email: m.email ?? undefined, enteredAt: m.enteredAt, entryCount: m.entryCount })),
      nextCursor: page.nextCursor ?? undefined,
      total: page.total,
    };
  }

  log(level: LogLevel, message: string): void {
    // Not journaled; silent while the run replays, and after the activation ended.
    if (this.act.halt !== null || this.act.replay.replaying) return;
    this.act.log(level, message);
  }
}
