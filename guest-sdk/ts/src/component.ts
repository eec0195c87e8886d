/**
 * The component binding: a {@link Module} as the `describe` and `run` exports of the WIT world
 * `waymark:journey/journey-module`, over the WIT `context` imports. `waymark build` generates
 * the entry that calls {@link exportsFor}; modules never import this file themselves.
 *
 * WIT → JS as componentize-js maps it: u64/s64 are BigInt, options are `undefined`, variants
 * are `{ tag, val }`, an import's `result::err` is thrown with the error in `.payload`, and an
 * error thrown (or a promise rejected) by `run` becomes its `result::err`.
 */
import { type Handler, Ctx } from './ctx.js';
import type { Duration } from './duration.js';
import { type Host, HostError, type LogLevel, type RawEvent, type RawInvocation } from './host.js';
import type { EntryLimit, Manifest, Module } from './module.js';

/** The WIT `context` interface as componentize-js presents it. */
export interface WitContext {
  now(): bigint;
  random(): bigint;
  sleep(duration: bigint, label: string | undefined): void;
  sleepUntil(at: bigint, label: string | undefined): void;
  waitForEvent(name: string, whereJson: string | undefined, timeout: bigint, label: string | undefined): WitEvent | undefined;
  trigger(name: string, personKey: string | undefined, propertiesJson: string): void;
  updateContact(propertiesJson: string): void;
  historyEventCount(personKey: string | undefined, name: string, within: bigint | undefined): bigint;
  historyEventCountSince(personKey: string | undefined, name: string, since: bigint | undefined): bigint;
  historyJourney(personKey: string | undefined, journey: string): { entries: bigint; completed: bigint; lastCompletedAt?: bigint };
  historyEmail(to: string | undefined, template: string): { count: bigint; lastSentAt?: bigint };
  checkpoint(label: string): void;
  sendEmail(email: { template: string; to: string | undefined; varsJson: string }): string;
  isSubscribed(): boolean;
  bucketCount(bucket: string): bigint;
  bucketHas(bucket: string, personKey: string): boolean;
  bucketMembers(
    bucket: string,
    page: { limit: number | undefined; cursor: string | undefined },
  ): {
    members: { key: string; email?: string; enteredAt: bigint; entryCount: number }[];
    nextCursor?: string;
    total: bigint;
  };
  log(level: LogLevel, message: string): void;
}

interface WitEvent {
  name: string;
  occurredAt: bigint;
  propertiesJson: string;
}

interface WitInvocation {
  handler: string;
  runId: string;
  person: { key: string; email?: string; propertiesJson: string };
  trigger: WitEvent;
}

const big = (n: number): bigint => BigInt(n);
const num = (n: bigint): number => Number(n);
const optNum = (n: bigint | undefined): number | undefined => (n === undefined ? undefined : Number(n));
const optBig = (n: number | undefined): bigint | undefined => (n === undefined ? undefined : BigInt(n));
const rawEvent = (e: WitEvent): RawEvent => ({ name: e.name, occurredAt: num(e.occurredAt), propertiesJson: e.propertiesJson });

/** Calls a WIT import whose `result::err` arrives as a thrown `{ payload }`, as a HostError. */
function call<T>(name: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const payload = (e as { payload?: unknown } | null)?.payload;
    throw new HostError(name, typeof payload === 'string' ? payload : String(e));
  }
}

/** The SDK's {@link Host} over the WIT imports. */
export function witHost(context: WitContext): Host {
  return {
    now: () => num(context.now()),
    random: () => context.random(),
    sleep: (duration: Duration, label) => context.sleep(big(duration), label),
    sleepUntil: (at, label) => context.sleepUntil(big(at), label),
    waitForEvent: (name, whereJson, timeout, label) => {
      const got = call('wait-for-event', () => context.waitForEvent(name, whereJson, big(timeout), label));
      return got === undefined ? undefined : rawEvent(got);
    },
    trigger: (name, personKey, propertiesJson) => call('trigger', () => context.trigger(name, personKey, propertiesJson)),
    updateContact: (propertiesJson) => call('update-contact', () => context.updateContact(propertiesJson)),
    historyEventCount: (personKey, name, within) =>
      num(call('history-event-count', () => context.historyEventCount(personKey, name, optBig(within)))),
    historyEventCountSince: (personKey, name, since) =>
      num(call('history-event-count-since', () => context.historyEventCountSince(personKey, name, optBig(since)))),
    historyJourney: (personKey, journey) => {
      const h = call('history-journey', () => context.historyJourney(personKey, journey));
      return { entries: num(h.entries), completed: num(h.completed), lastCompletedAt: optNum(h.lastCompletedAt) };
    },
    historyEmail: (to, template) => {
      const h = call('history-email', () => context.historyEmail(to, template));
      return { count: num(h.count), lastSentAt: optNum(h.lastSentAt) };
    },
    checkpoint: (label) => context.checkpoint(label),
    sendEmail: (template, to, varsJson) =>
      call(`send-email (template ${JSON.stringify(template)})`, () => context.sendEmail({ template, to, varsJson })),
    isSubscribed: () => context.isSubscribed(),
    bucketCount: (bucket) => num(call('bucket-count', () => context.bucketCount(bucket))),
    bucketHas: (bucket, personKey) => call('bucket-has', () => context.bucketHas(bucket, personKey)),
    bucketMembers: (bucket, limit, cursor) => {
      const page = call('bucket-members', () => context.bucketMembers(bucket, { limit, cursor }));
      return {
        members: page.members.map((m) => ({
          key: m.key,
          email: m.email,
          enteredAt: num(m.enteredAt),
          entryCount: m.entryCount,
        })),
        nextCursor: page.nextCursor,
        total: num(page.total),
      };
    },
    log: (level, message) => context.log(level, message),
  };
}

/** How a thrown value reads as the run's failure: the message, then the stack when there is one. */
export function failureMessage(thrown: unknown): string {
  if (thrown instanceof Error) {
    const head = `${thrown.name}: ${thrown.message}`;
    const stack = typeof thrown.stack === 'string' ? thrown.stack.trim() : '';
    if (stack === '') return head;
    // V8 stacks start with the head already; SpiderMonkey's are frames only.
    return stack.startsWith(head) ? stack : `${head}\n${stack}`;
  }
  if (typeof thrown === 'string') return thrown;
  try {
    return `thrown: ${JSON.stringify(thrown)}`;
  } catch {
    return `thrown: ${String(thrown)}`;
  }
}

/**
 * Runs `handler` over `ctx`: returns when it finished, throws the failure message (a string)
 * when it threw; for an async handler, a promise of the same.
 */
export function runHandler(handler: Handler, ctx: Ctx): void | Promise<void> {
  let result: void | Promise<void>;
  try {
    result = handler(ctx);
  } catch (e) {
    throw failureMessage(e);
  }
  if (result !== null && typeof result === 'object' && typeof (result as Promise<void>).then === 'function') {
    return (result as Promise<void>).then(
      () => undefined,
      (e: unknown) => {
        throw failureMessage(e);
      },
    );
  }
  return undefined;
}

function witEntryLimit(limit: EntryLimit): { tag: string; val?: bigint } {
  if (limit === 'once' || limit === 'unlimited') return { tag: limit };
  return { tag: 'once-per', val: big(limit.oncePer) };
}

/** The manifest in WIT shapes. */
export function witManifest(manifest: Manifest): unknown {
  return {
    journeys: manifest.journeys.map((j) => ({
      id: j.id,
      name: j.name,
      trigger: j.trigger,
      triggerWhere: j.triggerWhere,
      exitOn: j.exitOn.map((r) => ({ event: r.event, where: r.where })),
      entryLimit: witEntryLimit(j.entryLimit),
      enabled: j.enabled,
      suppress: big(j.suppress),
    })),
    templates: manifest.templates.map((t) => ({ key: t.key, subject: t.subject, body: t.body, html: t.html })),
    buckets: manifest.buckets.map((b) => ({
      id: b.id,
      name: b.name,
      description: b.description,
      enabled: b.enabled,
      kind: b.kind,
      criteriaJson: b.criteria,
      timeBased: b.timeBased,
      fastExpiry: b.fastExpiry,
      minDwellMs: optBig(b.minDwellMs),
      maxDwellMs: optBig(b.maxDwellMs),
      entryLimit: witEntryLimit(b.entryLimit),
      reactions: b.reactions.map((r) => {
        const on =
          'enter' in r.on
            ? { tag: 'enter', val: { firstEntryOnly: r.on.enter.firstEntryOnly } }
            : 'leave' in r.on
              ? { tag: 'leave', val: { reasons: r.on.leave.reasons } }
              : { tag: 'dwell', val: { afterMs: optBig(r.on.dwell.afterMs), everyMs: optBig(r.on.dwell.everyMs) } };
        return { journeyId: r.journeyId, handler: r.handler, on };
      }),
    })),
  };
}

/**
 * Routes `console.*` to the host's log (the component has no stdio): `log`/`info` at info,
 * `debug`, `warn`, `error` and `trace` at theirs. Like `ctx.info`, not journaled.
 */
function installConsole(context: WitContext): void {
  const at = (level: LogLevel) => (...args: unknown[]) => context.log(level, consoleLine(args));
  const forward = { log: at('info'), info: at('info'), debug: at('debug'), warn: at('warn'), error: at('error'), trace: at('trace') };
  Object.assign(globalThis.console ?? ((globalThis as { console?: object }).console = {}), forward);
}

/**
 * One log line from the arguments of a `console.*` call: strings as they are, errors as
 * {@link failureMessage} writes them, anything else as JSON (or `String(value)` when it has
 * none), joined by spaces. The test kit writes its console lines with it too.
 */
export function consoleLine(args: unknown[]): string {
  return args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? failureMessage(a) : safeJson(a))).join(' ');
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The world's exports for `module`. */
export function exportsFor(
  module: Module,
  context: WitContext,
): { describe(): unknown; run(invocation: WitInvocation): void | Promise<void> } {
  if (module === null || typeof module !== 'object' || typeof (module as Module).handler !== 'function') {
    throw new TypeError('the module entry must `export default defineModule({ ... })`');
  }
  installConsole(context);
  const host = witHost(context);
  return {
    describe: () => witManifest(module.manifest),
    run: (invocation: WitInvocation) => {
      const handler = module.handler(invocation.handler);
      if (handler === undefined) throw module.unknownHandler(invocation.handler);
      const raw: RawInvocation = {
        handler: invocation.handler,
        runId: invocation.runId,
        person: { key: invocation.person.key, email: invocation.person.email, propertiesJson: invocation.person.propertiesJson },
        trigger: rawEvent(invocation.trigger),
      };
      let ctx: Ctx;
      try {
        ctx = new Ctx(host, raw);
      } catch (e) {
        throw failureMessage(e);
      }
      return runHandler(handler, ctx);
    },
  };
}
